"""The `tcu` command. Every subcommand lives in its own module with register() and run().

A TcuError (bad input from the user, a receiver or the network) prints one clear line and
exits 2; anything else is a bug and keeps its traceback.
"""

# No `from __future__ import annotations`, and tcu.firmware.errors only on a failure: each is an
# import `tcu trigger` would pay for at every start (README, "Spawn time").
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import SimpleNamespace

# command -> the module that registers it. Only the module of the command being run is
# imported, so `tcu trigger` and `tcu status` start without paho, cbor2 or the HAL.
COMMANDS = {
    "replay": "replay_cmd", "fixes": "fixes_cmd", "backend": "backend", "demo": "demo",
    "record": "record_cmd", "replay-serial": "replay_serial_cmd", "doctor": "doctor_cmd",
    "audit": "audit_cmd", "run": "run_cmd", "trigger": "control_parser", "status": "control_parser",
    "reload": "control_parser", "msd": "msd_cmd", "modem-sim": "modem_sim_cmd", "fleet": "fleet_cmd",
}


# command -> its line in `tcu --help`, which lists the commands without importing any of them
# (tests/test_imports.py checks each line against the help its module registers).
SUMMARIES = {
    "replay": "run the unit over a recorded NMEA trace, publishing its uplinks",
    "fixes": "print the fixes decoded from a trace file or a live receiver",
    "backend": "subscribe to units' uplinks, decode and print them; `keygen` and `command` for signed "
               "commands; `sessions`, `export`, `plot` and `watch` for a store; `tap` for the wire",
    "demo": "the whole loop with nothing installed: broker, backend, unit, timeline",
    "record": "record a live receiver into a replayable trace file",
    "replay-serial": "write a trace into a serial port at its original pace",
    "doctor": "find serial ports that speak NMEA, their baud rate and fix",
    "audit": "the disclosure audit log",
    "run": "run the unit: GPS in, uplinks out, a control socket for testers",
    "trigger": "raise, clear or cancel a trigger on the running unit",
    "status": "the running unit's state, sessions, indicator, GPS, link, outbox",
    "reload": "make the running unit re-read its config file (as SIGHUP)",
    "modem-sim": "a virtual cellular modem (AT port, NMEA port, data relay)",
    "msd": "decode an eCall Minimum Set of Data (EN 15722 v2, UPER)",
    "fleet": "run N units (each the real firmware) against a broker",
}


def build_parser(command: str | None = None) -> "argparse.ArgumentParser":
    """The parser for one command, importing only its module; without a known command, the
    list of commands (what `tcu --help` and a mistyped command need), importing none."""
    import argparse

    parser = argparse.ArgumentParser(prog="tcu", description="tcu-emulator: a private-by-design telematics unit")
    parser.add_argument("--version", action="version", version="tcu " + _version())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        import importlib

        importlib.import_module("tcu.tools." + COMMANDS[command]).register(subparsers)
    else:
        for name in COMMANDS:
            subparsers.add_parser(name, help=SUMMARIES.get(name, ""), add_help=False)
    return parser


def _version() -> str:
    from tcu import __version__

    return str(__version__)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:  # without building every command's parser
        print("tcu " + _version())
        return 0
    args: argparse.Namespace | SimpleNamespace | None = None
    if argv and argv[0] in ("trigger", "status", "reload"):  # the tester's hot path: no argparse
        from tcu.tools.control_cmd import fast_args

        args = fast_args(argv)
    if args is None:
        args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tcu fixes ... | head`
        sys.stderr.close()
        return 0
    except Exception as err:
        from tcu.firmware.errors import TcuError

        if not isinstance(err, TcuError):
            raise  # a bug: its traceback
        print("tcu %s: error: %s" % (args.command, err), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
