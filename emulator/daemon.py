"""`tcu run`'s unit: the live firmware, its GPS reader and its local control socket.

The GPS thread feeds the HAL's output to the unit: while no session is active it asks for
no positions at all (heartbeats only, for GPS health); a session switches positions on.
The control socket (owner-only Unix socket, one JSON object per line each way) takes
{"op": "trigger" | "clear" | "cancel", "kind": NAME}, {"op": "status"}, {"op": "reload"} and
{"op": "schedule", "entries": [{"in_s": S, "op": ..., "kind": ...}]} / {"op": "unschedule", "id": N}
(emulator/schedule.py: triggers the unit carries out later, on its monotonic clock); with
"format": "text" or "json" it answers with the lines `tcu` prints (emulator/control_text.py).

A reload (SIGHUP, or the reload op) re-reads the config file and applies what can change
in a running unit (emulator/reload.py); the rest waits for a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tcu.emulator import control_text
from tcu.emulator.config import Config
from tcu.emulator.credentials import Credentials
from tcu.emulator.crypto import load_e2e_key, load_public_key
from tcu.emulator.live import LiveUnit
from tcu.emulator.schedule import TriggerSchedule
from tcu.emulator.state_lock import StateLock
from tcu.emulator.uplink import TlsOptions
from tcu.emulator.wallclock import Clocks
from tcu.firmware.clock import SOURCE_NAMES
from tcu.firmware.errors import SourceError, TcuError, UsageError
from tcu.firmware.events import Cancel, FixEvent, TriggerOff, TriggerOn
from tcu.firmware.fix import Fix
from tcu.firmware.services import PURPOSE_NAMES, TRIGGER_NAMES, TRIGGERS_BY_NAME, Service, service_terms
from tcu.firmware.unit import Refused
from tcu.hal import GnssStream, iter_fixes
from tcu.hal.indicator import open_indicator
from tcu.protocol import cose
from tcu.protocol.commands import BackendKey, CommandVerifier

EVENTS = {"trigger": TriggerOn, "clear": TriggerOff, "cancel": Cancel}


class GpsHealth:
    def __init__(self, source: str) -> None:
        self.source = source
        self.last_heard: float | None = None  # monotonic
        self.last_fix: float | None = None
        self.has_fix = False
        self.error = ""
        self.stream: Any = None  # the FixStream read: its counters explain a GPS without fixes

    def as_dict(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"source": self.source, "alive": self.last_heard is not None and now - self.last_heard < 3,
                "has_fix": self.has_fix, "error": self.error,
                "last_fix_age_s": None if self.last_fix is None else round(now - self.last_fix, 1),
                "reason": self._reason()}

    def _reason(self) -> str | None:
        """Why the GPS gave no fix so far (hal/summary.py), None when it did or is fine."""
        if self.stream is None or self.has_fix:
            return None
        from tcu.hal.summary import summarize

        try:
            return summarize(self.stream)["reason"]
        except (AttributeError, KeyError, RuntimeError):  # counters read while the reader changes them
            return None


def open_gps(gps: str, baudrate: int | None) -> GnssStream:
    """The GPS, asking for no positions until a session needs them; a device is reopened
    when it comes back, a trace file is read once."""
    return iter_fixes(gps, baudrate, positions_needed=False, reconnect=not Path(gps).is_file())


def verifier_of(config: Config) -> CommandVerifier | None:
    """Without a backend key the unit accepts no command at all."""
    from tcu.emulator.crypto import ed25519_verify

    keys = []
    if config.backend_key:
        keys.append(BackendKey(b"backend", cose.ALG_EDDSA, load_public_key(config.backend_key)))
    if config.backend_hmac_key:
        hmac_key = load_e2e_key(config.backend_hmac_key, "backend HMAC key")
        keys.append(BackendKey(b"backend-mac", cose.ALG_HMAC_256_256, hmac_key))
    return CommandVerifier(config.unit, keys, ed25519_verify) if keys else None


class UnitDaemon:
    def __init__(self, broker: str, unit_id: str, state_dir: str, gps: str, *, baudrate: int | None = None,
                 control: str | None = None, indicator: str = "none", tls: TlsOptions | None = None,
                 e2e_key: bytes | None = None, verifier: CommandVerifier | None = None,
                 audit_retention_s: int = 13 * 3600, services: dict[int, Service] | None = None,
                 inputs: Sequence[str] = (), auth: Credentials | None = None, vehicle: Any = None,
                 modem: Config | None = None, clocks: Clocks | None = None) -> None:
        """modem: a config whose [modem] port is set: the link follows that modem."""
        self.config: Config | None = None  # set by from_config: what a reload compares with
        self.loader: Callable[[], Config] | None = None
        self.reload_lock = threading.Lock()  # one reload at a time (SIGHUP and the control socket)
        self.closing = False
        self.state_lock = StateLock(state_dir)  # first: a second unit on this directory touches nothing
        try:
            self.indicator = open_indicator(indicator)
        except BaseException:
            self.state_lock.release()
            raise
        self.gps = GpsHealth(gps)
        self.inputs: Any = None
        self.modem: Any = None
        self.sms: Any = None
        try:
            self._stream = open_gps(gps, baudrate)
        except BaseException:
            self.indicator.close()
            self.state_lock.release()
            raise
        try:
            self.live = LiveUnit(broker, unit_id, state_dir, verifier, tls=tls, e2e_key=e2e_key,
                                 on_indicator=self._set_indicator, audit_retention_s=audit_retention_s,
                                 services=services, auth=auth, vehicle=vehicle, clocks=clocks,
                                 offline_ok=modem is not None and bool(modem.modem))
        except BaseException:  # the GPS port, the indicator and the lock are released on every failure
            self._stream.close()
            self.indicator.close()
            self.state_lock.release()
            raise
        if modem is not None and modem.modem:
            from tcu.emulator.modem_unit import ModemUnit

            self.sms = ModemUnit(self.live, modem)
            self.modem = self.sms.modem
        self.control_path = control or os.path.join(state_dir, "control.sock")
        try:
            self._server = _bind(self.control_path, self)
        except BaseException:
            self._stream.close()
            self.live.close()
            self.indicator.close()
            self.state_lock.release()
            raise
        try:
            self.inputs = self.open_inputs(inputs)
        except BaseException:
            self._close_parts()
            raise
        self.schedule = TriggerSchedule(self.request, lambda: self.live.now_ms() / 1000)
        threading.Thread(target=self._server.serve_forever, name="tcu-control", daemon=True).start()
        self.start_gps(self._stream, self.gps)

    @classmethod
    def from_config(cls, config: Config, loader: Callable[[], Config] | None = None) -> UnitDaemon:
        """The unit config describes; loader (the config read again) serves reloads."""
        tls = TlsOptions(config.tls_ca, config.tls_cert, config.tls_key) if (
            config.tls_ca or config.tls_cert or config.tls_key) else None
        daemon = cls(config.broker, config.unit, config.state, config.gps, baudrate=config.baud,
                     control=config.control, indicator=config.indicator, tls=tls,
                     e2e_key=load_e2e_key(config.e2e_key) if config.e2e_key else None,
                     verifier=verifier_of(config), audit_retention_s=int(config.audit_retention_h * 3600),
                     services=config.service_table(), inputs=config.inputs, auth=config.credentials(),
                     vehicle=config.vehicle_data(), modem=config)
        daemon.config, daemon.loader = config, loader
        return daemon

    def apply_modem_settings(self, config: Config) -> None:
        """What a reload can change of the modem: SMS number and delay, poll period."""
        if self.sms is not None:
            self.sms.apply(config)

    def open_inputs(self, specs: Sequence[str]) -> Any:
        """The trigger inputs (emulator/inputs.py, imported only when there are any)."""
        if not specs:
            return None
        from tcu.emulator.inputs import open_inputs

        return open_inputs(list(specs), self.request)

    def _set_indicator(self, on: bool) -> None:
        self.indicator.set(on)  # the indicator of the moment: a reload may swap it

    def start_gps(self, stream: GnssStream, health: GpsHealth) -> None:
        self._stream, self.gps = stream, health
        stream.positions_needed = bool(self.live.unit.sessions)
        self._gps_thread = threading.Thread(target=self._read_gps, args=(stream, health), name="tcu-gps",
                                            daemon=True)
        self._gps_thread.start()

    def stop_gps(self, timeout_s: float = 5.0) -> None:
        """Release the GPS port and let its reader end (a reload restarts it)."""
        self._stream.close()
        self._gps_thread.join(timeout_s)

    def _read_gps(self, stream: GnssStream, health: GpsHealth) -> None:
        health.stream = stream
        try:
            for item in stream.items():
                health.last_heard = time.monotonic()
                if isinstance(item, Fix):
                    health.last_fix, health.has_fix = health.last_heard, True
                    self.live.handle(FixEvent(item))
                else:  # dormant: no position decoded, but the receiver says whether it has a fix
                    health.has_fix = item.has_fix
                    if item.has_fix:
                        health.last_fix = health.last_heard
                        if item.time_ms is not None:  # its time is GNSS wall time
                            self.live.clocks.heard_gnss(item.time_ms)
                stream.positions_needed = bool(self.live.unit.sessions)
        except (SourceError, OSError, ValueError) as err:  # closed under us at shutdown, or gone for good
            health.error = str(err)

    def request(self, request: Any) -> dict[str, Any]:
        """Answer one control request; never raises."""
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        op, kind = request.get("op"), request.get("kind")
        if op == "status":
            return {"ok": True, "status": self.status()}
        if op == "reload":
            from tcu.emulator.reload import reload

            return reload(self)
        if op in ("schedule", "unschedule"):  # emulator/schedule.py
            return self.schedule.request(request)
        if not isinstance(op, str) or op not in EVENTS or not isinstance(kind, str) or kind not in TRIGGERS_BY_NAME:
            return {"ok": False, "error": "unknown request %r" % (request,)}  # (a list or dict is unhashable)
        test = request.get("test", False) is True
        if test and (op != "trigger" or kind not in ("crash", "sos")):
            return {"ok": False, "error": "only a crash or sos trigger can be a test call"}
        try:
            self.live.handle(TriggerOn(TRIGGERS_BY_NAME[kind], test) if test else EVENTS[op](TRIGGERS_BY_NAME[kind]))
        except Refused as err:
            return {"ok": False, "error": str(err)}
        except TcuError as err:
            return {"ok": False, "error": "%s: %s" % (type(err).__name__, err)}
        return {"ok": True, "indicator": self.live.unit.indicator}

    def status(self) -> dict[str, Any]:
        live, uplink = self.live, self.live.uplink
        with live.lock:
            now = live.now_ms()
            sessions = [{"session": s.sid, "trigger": TRIGGER_NAMES[s.service.trigger],
                         "purpose": PURPOSE_NAMES[s.service.purpose], "samples": s.samples,
                         "started": s.start_wall_ms // 1000, "ends_in_s": max(0, (s.end_ms - now) // 1000),
                         "test": s.test, "msd_sent": 0 if s.msd_values is None else s.msd_values.message_id}
                        for s in sorted(live.unit.sessions.values(), key=lambda s: s.sid)]
            indicator = live.unit.indicator
            # A fresh reading, what the unit's next event will carry: a dormant unit's firmware hears
            # of no heartbeat and no system clock, so its own last reading may be long out of date.
            clock = live.clocks.reading()
            wall = {"source": SOURCE_NAMES[clock.source], "trusted": clock.trusted, "now": clock.ms // 1000,
                    "ntp_synchronised": live.clocks.ntp(), "rollovers_corrected": live.clocks.rollover.corrected}
            services = {TRIGGER_NAMES[code]: service_terms(s) for code, s in sorted(live.unit.services.items())}
        return {"unit": live.unit_id, "boot": uplink.boot, "state": "active" if sessions else "dormant",
                "indicator": indicator, "sessions": sessions, "gps": self.gps.as_dict(), "time": wall,
                "link": {"broker": uplink.broker.url, "connected": uplink.connected, "acked": uplink.stats.acked,
                         "outbox": len(uplink.outbox), "broker_limits": uplink.stats.limits,
                         "too_large": uplink.stats.too_large, "refused": uplink.stats.refused,
                         "problem": uplink.stats.last_error if uplink.fatal or uplink.stats.too_large else ""},
                "config": None if self.config is None else self.config.path, "services": services,
                "scheduled": self.schedule.status(),
                **({"modem": self.sms.as_dict()} if self.sms is not None else {})}

    def close(self) -> None:
        """Shut down cleanly: control socket, GPS port released, sessions ended, outbox flushed."""
        with self.reload_lock:  # an ongoing reload finishes first; none starts after this
            self.closing = True
        self.schedule.close()  # nothing scheduled fires while the unit stops
        if self.inputs is not None:  # no trigger comes in while the unit shuts down
            self.inputs.close()
            self.inputs = None
        self._server.shutdown()
        self._close_parts()

    def _close_parts(self) -> None:
        self._server.server_close()
        try:
            os.unlink(self.control_path)
        except FileNotFoundError:
            pass
        self._stream.close()
        if self.sms is not None:
            self.sms.close()
        self.live.close()
        self.indicator.close()
        self.state_lock.release()  # last: the outbox and audit log are closed


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        daemon: UnitDaemon = self.server.daemon  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):  # the client went away before its answer: nobody to tell
            for line in self.rfile:
                try:
                    request = json.loads(line)
                except ValueError:
                    request, answer = None, {"ok": False, "error": "a request is one JSON object per line"}
                else:
                    answer = daemon.request(request)
                if isinstance(request, dict) and request.get("format") in control_text.FORMATS:
                    self.wfile.write(control_text.frame(*control_text.render(request, answer, daemon.status)))
                else:
                    self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _bind(path: str, daemon: UnitDaemon) -> _Server:
    """The control socket, owner-only from its creation (umask), replacing a stale one."""
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            raise UsageError("another unit is already listening on %s" % path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
        finally:
            probe.close()
    old = os.umask(0o177)
    try:
        server = _Server(path, _Handler)
    except OSError as err:
        raise UsageError("cannot create the control socket %s: %s" % (path, err.strerror)) from None
    finally:
        os.umask(old)
    server.daemon = daemon  # type: ignore[attr-defined]
    return server
