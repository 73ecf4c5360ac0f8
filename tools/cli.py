"""The `tcu` command. Every subcommand lives in its own module with register() and run().

A TcuError (bad input from the user, a receiver or the network) prints one clear line and
exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from tcu.firmware.errors import TcuError

# command -> the module that registers it. Only the module of the command being run is
# imported, so `tcu trigger` and `tcu status` start without paho, cbor2 or the HAL.
COMMANDS = {
    "replay": "replay_cmd", "fixes": "fixes_cmd", "backend": "backend", "demo": "demo",
    "record": "record_cmd", "replay-serial": "replay_serial_cmd", "doctor": "doctor_cmd",
    "audit": "audit_cmd", "run": "run_cmd", "trigger": "control_cmd", "status": "control_cmd",
    "reload": "control_cmd", "msd": "msd_cmd", "fleet": "fleet_cmd",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for one command (fast), or for all of them (for `tcu --help`)."""
    parser = argparse.ArgumentParser(prog="tcu", description="tcu-emulator: a private-by-design telematics unit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    import importlib

    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module("tcu.tools." + name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
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
