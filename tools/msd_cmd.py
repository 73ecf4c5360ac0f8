"""`tcu msd decode HEX|-` (any eCall MSD) and `tcu backend msd --store FILE [--session SEL]` (the MSDs a
stored crash or SOS session sent), as JSON with EN 15722's field names."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tcu.firmware.errors import UsageError


def _decoded(data: bytes) -> dict[str, Any]:
    from tcu.emulator import msd

    try:
        out = msd.decode(data)
    except msd.MsdError as err:
        raise UsageError(str(err)) from None
    out["bytes"] = len(data)
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("msd", help="decode an eCall Minimum Set of Data (EN 15722 v2, UPER)")
    verbs = parser.add_subparsers(dest="msd_verb", required=True, metavar="decode")
    decode = verbs.add_parser("decode", help="decode one MSD given in hex (or '-': hex or raw bytes on stdin)")
    decode.add_argument("data", metavar="HEX|-")
    decode.set_defaults(run=run_decode)


def read_input(data: str) -> bytes:
    if data == "-":
        raw = sys.stdin.buffer.read()
        try:
            text = raw.decode("ascii").strip()
            return bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            return raw  # not hex: the MSD's own bytes
    try:
        return bytes.fromhex(data.strip().removeprefix("0x"))
    except ValueError:
        raise UsageError("%r is not hex (give the MSD in hex, or '-' to read it from stdin)" % data[:40]) from None


def run_decode(args: argparse.Namespace) -> int:
    print(json.dumps(_decoded(read_input(args.data)), indent=1))
    return 0


def register_verb(verbs: argparse._SubParsersAction, selector_help: str) -> None:
    parser = verbs.add_parser("msd", help="print a stored crash or SOS session's eCall MSDs as JSON")
    parser.add_argument("--store", required=True, metavar="FILE", help="the SQLite store of tcu backend --store")
    parser.add_argument("--session", metavar="SEL", help=selector_help)
    parser.add_argument("--all", action="store_true", help="every MSD the session sent, not only the last")
    parser.set_defaults(run=run_backend_msd)


def run_backend_msd(args: argparse.Namespace) -> int:
    from tcu.tools.export_cmd import pick
    from tcu.tools.sessions import load_sessions

    sessions = load_sessions(args.store)
    if args.session is None:  # the store's only session with an MSD
        sessions = [s for s in sessions if s.msds] or sessions
    session = pick(sessions, args.session)
    if not session.msds:
        raise UsageError("session %s carries no MSD (only crash and sos sessions send one, at their first fix)"
                         % session.name)
    chosen = session.msds if args.all else session.msds[-1:]
    for data in chosen:
        out = {"unit": session.unit, "boot": session.boot, "session": session.sid, **_decoded(data)}
        print(json.dumps(out, indent=None if args.all else 1))
    return 0
