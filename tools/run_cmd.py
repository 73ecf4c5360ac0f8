"""`tcu run`: the unit as a long-running process on a live (or virtual) GPS and a broker.

SIGTERM or Ctrl-C shuts it down cleanly: sessions end, the outbox is flushed as far as the
broker allows, the GPS port is released. Testers drive it with `tcu trigger` and
`tcu status` on its control socket.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from tcu.emulator.crypto import load_e2e_key, load_public_key
from tcu.emulator.daemon import UnitDaemon
from tcu.firmware.errors import UsageError
from tcu.protocol import cose
from tcu.protocol.commands import BackendKey, CommandVerifier
from tcu.tools.fixes_cmd import _baudrate
from tcu.tools.replay_cmd import add_tls_arguments, tls_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the unit: GPS in, uplinks out, a control socket for testers")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt:// or mqtts:// (default: %(default)s)")
    parser.add_argument("--gps", default="/dev/ttyACM0",
                        help="a serial device, a pyserial URL or a trace file (default: %(default)s)")
    parser.add_argument("--baud", type=_baudrate, default=None, help="the receiver's baud rate (default: detect)")
    parser.add_argument("--unit", default="unit-0001", help="this unit's identity in topics (default: %(default)s)")
    parser.add_argument("--state", default="tcu-state", metavar="DIR",
                        help="outbox, command counter and audit log (default: %(default)s)")
    parser.add_argument("--control", metavar="PATH", help="the control socket (default: STATE/control.sock)")
    parser.add_argument("--indicator", default="none", metavar="SPEC",
                        help="privacy indicator output: none, file:PATH, sysfs-led:NAME or gpio:PIN")
    parser.add_argument("--e2e-key", metavar="FILE", help="seal located uplinks end to end with this key (hex)")
    parser.add_argument("--backend-key", metavar="PEM",
                        help="the backend's Ed25519 public key: accept commands it signed (key id 'backend')")
    parser.add_argument("--backend-hmac-key", metavar="FILE",
                        help="a per-unit HMAC key (hex): accept commands MACed with it (key id 'backend-mac')")
    parser.add_argument("--audit-retention", type=float, default=13.0, metavar="HOURS",
                        help="keep audit records this long after their session ended (default: 13, as eCall)")
    add_tls_arguments(parser)
    parser.set_defaults(run=run)


def verifier_of(args: argparse.Namespace) -> CommandVerifier | None:
    """Without a backend key the unit accepts no command at all."""
    from tcu.emulator.crypto import ed25519_verify

    keys = []
    if args.backend_key:
        keys.append(BackendKey(b"backend", cose.ALG_EDDSA, load_public_key(args.backend_key)))
    if args.backend_hmac_key:
        hmac_key = load_e2e_key(args.backend_hmac_key, "backend HMAC key")
        keys.append(BackendKey(b"backend-mac", cose.ALG_HMAC_256_256, hmac_key))
    return CommandVerifier(args.unit, keys, ed25519_verify) if keys else None


def run(args: argparse.Namespace) -> int:
    if not 0 < args.audit_retention <= 24 * 365:
        raise UsageError("--audit-retention %s: hours from 0 to a year" % args.audit_retention)
    if "/" in args.unit or "+" in args.unit or "#" in args.unit:
        raise UsageError("--unit %r: a unit id cannot contain '/', '+' or '#' (it is a topic level)" % args.unit)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    daemon = UnitDaemon(args.broker, args.unit, args.state, args.gps, baudrate=args.baud, control=args.control,
                        indicator=args.indicator, tls=tls_options(args),
                        e2e_key=load_e2e_key(args.e2e_key) if args.e2e_key else None, verifier=verifier_of(args),
                        audit_retention_s=int(args.audit_retention * 3600))
    print("tcu run: unit %s (boot %d) on %s, GPS %s; control socket %s" % (
        args.unit, daemon.live.uplink.boot, args.broker, args.gps, daemon.control_path), file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        daemon.close()
        print("tcu run: stopped cleanly", file=sys.stderr, flush=True)
    return 0
