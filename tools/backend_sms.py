"""The backend's SMS input: `tcu backend sms PDU... --store FILE` for SMS copies handed over
by an SMS gateway (SMS-DELIVER or SMS-SUBMIT PDUs in hex), and `tcu backend --sms-log FILE`,
which follows the JSONL log `tcu modem-sim --sms-log` writes. Either way an SMS copy is
stored like the MQTT copy and deduplicated with it on (unit, boot, seq).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
import time
from typing import Any

from tcu.firmware.errors import UsageError


def register_verb(verbs: argparse._SubParsersAction) -> None:
    sms = verbs.add_parser("sms", help="store the uplinks of SMS copies (PDUs in hex), deduplicated")
    sms.add_argument("pdus", nargs="+", metavar="PDU")
    sms.add_argument("--store", required=True, metavar="FILE", help="the SQLite store of tcu backend --store")
    sms.add_argument("--e2e-key", metavar="FILE", help="open uplinks sealed end to end with this key (hex)")
    sms.set_defaults(run=run_sms)


def run_sms(args: argparse.Namespace) -> int:
    from tcu.emulator.crypto import load_e2e_key
    from tcu.tools.backend import Backend

    backend = Backend(None, store=args.store, e2e_key=load_e2e_key(args.e2e_key) if args.e2e_key else None)
    try:
        new = sum(backend.ingest_sms(pdu) for pdu in args.pdus)
        rejected = list(backend.rejected)
        print("backend: %d new uplinks from %d SMS, %d duplicates" % (new, len(args.pdus), backend.duplicates))
    finally:
        backend.close()
    for line in rejected:
        print("backend: rejected %s" % line, file=sys.stderr)
    if rejected and not new:
        raise UsageError("no SMS could be read")
    return 0


def follow(backend: Any, path: str, poll_s: float = 0.1) -> threading.Thread:
    """Ingest every PDU of the JSONL file as lines are appended (the file may not exist yet)."""

    def run() -> None:
        offset = 0
        while True:
            try:
                with open(path, encoding="utf-8") as file:
                    file.seek(offset)
                    for line in file:
                        if not line.endswith("\n"):
                            break  # a line still being written: next round
                        offset += len(line.encode())
                        try:
                            record = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(record, dict) and isinstance(record.get("pdu"), str):
                            backend.ingest_sms(record["pdu"])
            except FileNotFoundError:
                pass
            except (ValueError, sqlite3.Error):  # the store was closed: the backend is done
                return
            time.sleep(poll_s)

    thread = threading.Thread(target=run, name="tcu-backend-sms", daemon=True)
    thread.start()
    return thread
