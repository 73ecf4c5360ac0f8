"""The `tcu` command. Every subcommand lives in its own module with register() and run().

A TcuError (bad input from the user, a receiver or the network) prints one clear line and
exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from tcu.firmware.errors import TcuError

SUBCOMMANDS = ("replay_cmd", "fixes_cmd", "backend", "demo",
               "record_cmd", "replay_serial_cmd", "doctor_cmd", "audit_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tcu", description="tcu-emulator: a private-by-design telematics unit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    import importlib

    for name in SUBCOMMANDS:
        importlib.import_module("tcu.tools." + name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except TcuError as err:
        print("tcu %s: error: %s" % (args.command, err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tcu fixes ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
