"""`tcu modem-sim`: a virtual Quectel EG25-G or SIMCom SIM7600 for tests and bench work.

    tcu modem-sim --link /tmp/modem --profile quectel-eg25 --nmea-link /tmp/gnss --gnss TRACE \
        --data 127.0.0.1:18830=127.0.0.1:1883 --sms-log sms.jsonl --scenario tunnel.toml
    tcu modem-sim ctl coverage off        # a tunnel, by hand
    tcu modem-sim ctl signal -110
    tcu modem-sim ctl reset

See emulator/modem_sim.py (the conversation), emulator/modem_sim_io.py (ports) and
emulator/modem_relay.py (the data path).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import tomllib
from typing import Any

from tcu.firmware.errors import UsageError

DEFAULT_CONTROL = "tcu-modem-sim.sock"


def _hostport(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.removeprefix("tcp://").rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1") or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError("%s %r: expected 127.0.0.1:PORT (loopback only)" % (what, text))
    return host, int(port)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("modem-sim", help="a virtual cellular modem (AT port, NMEA port, data relay)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", nargs="*", metavar="ctl OP [VALUE]",
                        help="ctl coverage on|off, cs on|off, service on|off, signal DBM, roaming on|off, "
                             "denied on|off, sim on|off, stuck on|off, errors N, flood N, reset, status")
    parser.add_argument("--profile", default="quectel-eg25", choices=("quectel-eg25", "simcom-sim7600"))
    parser.add_argument("--link", metavar="PATH", help="symlink PATH to the AT port's pseudo-terminal")
    parser.add_argument("--listen", metavar="tcp://127.0.0.1:PORT", help="the AT port on a loopback TCP port instead")
    parser.add_argument("--nmea-link", metavar="PATH", help="symlink PATH to the NMEA port's pseudo-terminal")
    parser.add_argument("--gnss", metavar="TRACE", help="the NMEA trace the GNSS engine plays (retimed, looped)")
    parser.add_argument("--data", metavar="LISTEN=BROKER", help="data relay, e.g. 127.0.0.1:18830=127.0.0.1:1883")
    parser.add_argument("--sms-log", metavar="FILE", help="append every SMS sent as JSON lines (PDU and decoded)")
    parser.add_argument("--scenario", metavar="FILE", help="a TOML timeline: [[step]] t = SECONDS, OP = VALUE")
    parser.add_argument("--speed", type=float, default=1.0, help="the scenario's time compression (default 1)")
    parser.add_argument("--control", metavar="PATH", default=DEFAULT_CONTROL,
                        help="the control socket (default: %s)" % DEFAULT_CONTROL)
    parser.set_defaults(run=run)


def load_scenario(path: str) -> tuple[list[dict[str, Any]], bool]:
    try:
        with open(path, "rb") as file:
            doc = tomllib.load(file)
    except OSError as err:
        raise UsageError("scenario %s: cannot read it: %s" % (path, err.strerror)) from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError("scenario %s: not valid TOML: %s" % (path, err)) from None
    steps = doc.get("step", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) and isinstance(s.get("t", 0), int | float)
                                              for s in steps):
        raise UsageError("scenario %s: expected [[step]] tables, each with t = SECONDS" % path)
    return sorted(steps, key=lambda s: float(s.get("t", 0))), bool(doc.get("repeat", False))


def run(args: argparse.Namespace) -> int:
    if args.action:
        if args.action[0] != "ctl" or len(args.action) not in (2, 3):
            raise UsageError("usage: tcu modem-sim ctl OP [VALUE]")
        from tcu.emulator.modem_sim_io import control

        state = control(args.control, args.action[1], args.action[2] if len(args.action) == 3 else None)
        print(json.dumps(state, sort_keys=True))
        return 0
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    from tcu.emulator.modem_relay import Relay
    from tcu.emulator.modem_sim_io import ModemSim, new_model, run_scenario, serve_control
    from tcu.hal.sms_pdu import decode_pdu

    if args.link and args.listen:
        raise UsageError("--link (a pty) or --listen (TCP), not both")
    steps, repeat = load_scenario(args.scenario) if args.scenario else ([], False)
    model = new_model(args.profile)
    sms_lock = threading.Lock()

    def on_sms(pdu: str, mr: int) -> None:
        if not args.sms_log:
            return
        record: dict[str, Any] = {"time": round(time.time(), 3), "mr": mr, "pdu": pdu}
        try:
            number, data = decode_pdu(pdu)
            record.update(to=number, data=data.hex())
        except UsageError as err:
            record["error"] = str(err)
        with sms_lock, open(args.sms_log, "a") as log:
            log.write(json.dumps(record) + "\n")

    model.on_sms = on_sms
    sim = ModemSim(model, args.link, _hostport(args.listen, "--listen") if args.listen else None, args.nmea_link)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.data:
            listen, _, broker = args.data.partition("=")
            sim.relay = Relay(_hostport(listen, "--data"), _hostport(broker, "--data"),
                              lambda: model.state.stat(True) in (1, 5), lambda: sim.down_since)
        server = serve_control(args.control, sim)
        if args.gnss:
            threading.Thread(target=_play_gnss, args=(args.gnss, sim), daemon=True).start()
        if steps:
            threading.Thread(target=run_scenario, args=(sim, steps, args.speed, stop, repeat), daemon=True).start()
        print("tcu modem-sim: %s on %s%s%s; control %s" % (
            args.profile, sim.at_path, ", NMEA %s" % args.nmea_link if args.nmea_link else "",
            ", data %d" % sim.relay.port if sim.relay else "", args.control), file=sys.stderr, flush=True)
        try:
            sim.serve()
        except KeyboardInterrupt:
            pass
        server.shutdown()
    finally:
        stop.set()
        sim.close()
    return 0


def _play_gnss(trace: str, sim: Any) -> None:
    from tcu.tools.replay_serial_cmd import play

    play(trace, sim.gnss_write, 1.0, True, retime=True)
