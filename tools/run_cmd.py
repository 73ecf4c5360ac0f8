"""`tcu run`: the unit as a long-running process on a live (or virtual) GPS and a broker.

Its settings come from a TOML file (`--config FILE` or TCU_CONFIG; see deploy/tcu.toml and
emulator/config.py), each overridden by the option of the same setting when one is given.
SIGHUP (or `tcu reload`) re-reads the file and applies what can change live
(emulator/reload.py). SIGTERM or Ctrl-C shuts it down cleanly: sessions end, the outbox is
flushed as far as the broker allows, the GPS port is released. Testers drive it with
`tcu trigger` and `tcu status` on its control socket.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from tcu.emulator.config import Config, resolve
from tcu.emulator.daemon import UnitDaemon
from tcu.emulator.preflight import check_broker_url, check_tls
from tcu.tools.fixes_cmd import _baudrate
from tcu.tools.tls_options import add_tls_arguments

D = Config()  # the defaults, for the help texts: every option defaults to None ("not given")


def _baud_option(text: str) -> int | str:
    return "auto" if text == "auto" else _baudrate(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the unit: GPS in, uplinks out, a control socket for testers",
        description="Options given here override the config file's settings.")
    parser.add_argument("--config", metavar="FILE",
                        help="a TOML config file (default: $TCU_CONFIG, else none; see deploy/tcu.toml)")
    parser.add_argument("--broker", help="mqtt:// or mqtts:// (default: %s)" % D.broker)
    parser.add_argument("--gps", help="a serial device, a pyserial URL or a trace file (default: %s)" % D.gps)
    parser.add_argument("--baud", type=_baud_option, help="the receiver's baud rate, or auto (default: detect)")
    parser.add_argument("--unit", help="this unit's identity in topics (default: %s)" % D.unit)
    parser.add_argument("--state", metavar="DIR", help="outbox, command counter and audit log (default: %s)" % D.state)
    parser.add_argument("--control", metavar="PATH", help="the control socket (default: STATE/control.sock)")
    parser.add_argument("--indicator", metavar="SPEC",
                        help="privacy indicator output: none (default), file:PATH, sysfs-led:NAME or gpio:PIN")
    parser.add_argument("--input", action="append", metavar="SPEC",
                        help="a trigger input (repeatable; replaces the config file's inputs): fifo:PATH "
                             "(a named pipe: echo crash > PATH), file:PATH (a file followed like tail -F), "
                             "pty:PATH (a serial-console pty that answers ok/refused), "
                             "gpio:PIN=KIND[,cancel-hold=S] (a button to ground, BCM numbering)")
    parser.add_argument("--e2e-key", metavar="FILE", help="seal located uplinks end to end with this key (hex)")
    parser.add_argument("--backend-key", metavar="PEM",
                        help="the backend's Ed25519 public key: accept commands it signed (key id 'backend')")
    parser.add_argument("--backend-hmac-key", metavar="FILE",
                        help="a per-unit HMAC key (hex): accept commands MACed with it (key id 'backend-mac')")
    parser.add_argument("--audit-retention", type=float, metavar="HOURS",
                        help="keep audit records this long after their session ended (default: 13, as eCall)")
    add_tls_arguments(parser)
    parser.set_defaults(run=run)


def check_config_link(config: Config, args: argparse.Namespace) -> None:
    """The broker URL and TLS files, each named as given (option or config key), before the
    state directory, the GPS or the link is touched."""
    def label(dest: str, key: str) -> str:
        return "--" + dest.replace("_", "-") if getattr(args, dest, None) else "%s (config %s)" % (key, config.path)

    check_broker_url(config.broker, label("broker", "broker.url"))
    check_tls(config.broker, (label("tls_ca", "broker.tls_ca"), config.tls_ca),
              (label("tls_cert", "broker.tls_cert"), config.tls_cert),
              (label("tls_key", "broker.tls_key"), config.tls_key))


def run(args: argparse.Namespace) -> int:
    config = resolve(args)
    check_config_link(config, args)
    stop, reload, wake = threading.Event(), threading.Event(), threading.Event()

    def on_signal(signum: int, frame: Any) -> None:  # the main loop acts: a handler only flags
        (reload if signum == signal.SIGHUP else stop).set()
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    daemon = UnitDaemon.from_config(config, loader=lambda: resolve(args))
    daemon.live.uplink.report_problems_to(lambda line: print("tcu run: link: %s" % line, file=sys.stderr, flush=True))
    print("tcu run: unit %s (boot %d) on %s, GPS %s; control socket %s%s" % (
        config.unit, daemon.live.uplink.boot, daemon.live.uplink.broker.url, config.gps, daemon.control_path,
        "; config %s" % config.path if config.path else ""), file=sys.stderr, flush=True)
    try:
        while not stop.is_set():
            wake.wait()
            wake.clear()
            if reload.is_set() and not stop.is_set():  # SIGHUPs during a reload: one more after it
                reload.clear()
                daemon.request({"op": "reload"})  # answers on stderr: it logs its summary
    finally:
        daemon.close()
        print("tcu run: stopped cleanly", file=sys.stderr, flush=True)
    return 0
