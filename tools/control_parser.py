"""`tcu trigger`, `tcu status` and `tcu reload` through argparse: their --help, and any command
line the fast path (tools/control_cmd.py fast_args) leaves to it. Kept out of control_cmd.py,
whose every line a checkout without .pyc files compiles at each start (README, "Spawn time")."""

from __future__ import annotations

import argparse

from tcu.tools.control_cmd import KINDS, default_control, run_reload, run_status, run_trigger


def register(subparsers: argparse._SubParsersAction) -> None:
    names = ", ".join(KINDS)
    trigger = subparsers.add_parser(
        "trigger", help="raise, clear or cancel a trigger on the running unit",
        usage="tcu trigger [clear|cancel] KIND [--test] [--at WHEN] [--control PATH | --state DIR]\n"
              "       tcu trigger --script FILE | --unschedule [ID]  [--control PATH | --state DIR]",
        description="tcu trigger KIND | tcu trigger clear KIND | tcu trigger cancel KIND; KIND: %s. "
                    "--at and --script leave the schedule with the unit (tcu status lists it)" % names)
    trigger.add_argument("words", nargs="*", metavar="[clear|cancel] KIND")
    trigger.add_argument("--test", action="store_true",
                         help="crash or sos: a test call (the MSD's testCall), never counted as a real emergency")
    trigger.add_argument("--at", metavar="WHEN", help="later: +30, +5m, +1m30s from now, HH:MM[:SS] today "
                         "(local time) or an ISO 8601 time with offset; the unit keeps the schedule")
    trigger.add_argument("--script", metavar="FILE", help="a schedule, one `WHEN [clear|cancel] KIND [--test]` "
                         "a line (+30 crash, +60 clear crash, +90 theft), offsets from now")
    trigger.add_argument("--unschedule", nargs="?", const="all", metavar="ID",
                         help="drop scheduled trigger ID (no ID: all of them)")
    _where(trigger)
    trigger.set_defaults(run=run_trigger)
    status = subparsers.add_parser("status", help="the running unit's state, sessions, indicator, GPS, link, outbox")
    status.add_argument("--json", action="store_true", help="the whole status as JSON")
    _where(status)
    status.set_defaults(run=run_status)
    reload = subparsers.add_parser("reload", help="make the running unit re-read its config file (as SIGHUP)")
    _where(reload)
    reload.set_defaults(run=run_reload)


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default=None, metavar="PATH",
                        help="the unit's control socket (default: %s)" % default_control())
    parser.add_argument("--state", default=None, metavar="DIR",
                        help="the unit's state directory (tcu run --state): its socket DIR/control.sock")
