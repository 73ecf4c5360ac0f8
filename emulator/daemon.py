"""`tcu run`'s unit: the live firmware, its GPS reader and its local control socket.

The GPS thread feeds the HAL's output to the unit: while no session is active it asks for
no positions at all (heartbeats only, for GPS health); a session switches positions on.
The control socket (owner-only Unix socket, one JSON object per line each way) takes
{"op": "trigger" | "clear" | "cancel", "kind": NAME} and {"op": "status"}.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
import time
from pathlib import Path
from typing import Any

from tcu.emulator.live import LiveUnit
from tcu.emulator.uplink import TlsOptions
from tcu.firmware.errors import SourceError, TcuError, UsageError
from tcu.firmware.events import Cancel, FixEvent, TriggerOff, TriggerOn
from tcu.firmware.fix import Fix
from tcu.firmware.services import PURPOSE_NAMES, TRIGGER_NAMES, TRIGGERS_BY_NAME
from tcu.firmware.unit import Refused
from tcu.hal import iter_fixes
from tcu.hal.indicator import open_indicator
from tcu.protocol.commands import CommandVerifier

EVENTS = {"trigger": TriggerOn, "clear": TriggerOff, "cancel": Cancel}


class GpsHealth:
    def __init__(self, source: str) -> None:
        self.source = source
        self.last_heard: float | None = None  # monotonic
        self.last_fix: float | None = None
        self.has_fix = False
        self.error = ""

    def as_dict(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"source": self.source, "alive": self.last_heard is not None and now - self.last_heard < 3,
                "has_fix": self.has_fix, "error": self.error,
                "last_fix_age_s": None if self.last_fix is None else round(now - self.last_fix, 1)}


class UnitDaemon:
    def __init__(self, broker: str, unit_id: str, state_dir: str, gps: str, *, baudrate: int | None = None,
                 control: str | None = None, indicator: str = "none", tls: TlsOptions | None = None,
                 e2e_key: bytes | None = None, verifier: CommandVerifier | None = None,
                 audit_retention_s: int = 13 * 3600) -> None:
        self.indicator = open_indicator(indicator)
        self.gps = GpsHealth(gps)
        self._stream = iter_fixes(gps, baudrate, positions_needed=False, reconnect=not Path(gps).is_file())
        try:
            self.live = LiveUnit(broker, unit_id, state_dir, verifier, tls=tls, e2e_key=e2e_key,
                                 on_indicator=self.indicator.set, audit_retention_s=audit_retention_s)
        except BaseException:  # the GPS port and the indicator are released on every failure
            self._stream.close()
            self.indicator.close()
            raise
        self.control_path = control or os.path.join(state_dir, "control.sock")
        try:
            self._server = _bind(self.control_path, self)
        except BaseException:
            self._stream.close()
            self.live.close()
            self.indicator.close()
            raise
        self._threads = [threading.Thread(target=self._read_gps, name="tcu-gps", daemon=True),
                         threading.Thread(target=self._server.serve_forever, name="tcu-control", daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_gps(self) -> None:
        stream = self._stream
        try:
            for item in stream.items():
                self.gps.last_heard = time.monotonic()
                if isinstance(item, Fix):
                    self.gps.last_fix, self.gps.has_fix = self.gps.last_heard, True
                    self.live.handle(FixEvent(item))
                else:
                    self.gps.has_fix = item.has_fix
                stream.positions_needed = bool(self.live.unit.sessions)
        except (SourceError, OSError, ValueError) as err:  # closed under us at shutdown, or gone for good
            self.gps.error = str(err)

    def request(self, request: Any) -> dict[str, Any]:
        """Answer one control request; never raises."""
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        op, kind = request.get("op"), request.get("kind")
        if op == "status":
            return {"ok": True, "status": self.status()}
        if op not in EVENTS or kind not in TRIGGERS_BY_NAME:
            return {"ok": False, "error": "unknown request %r" % (request,)}
        try:
            self.live.handle(EVENTS[op](TRIGGERS_BY_NAME[kind]))
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
                         "started": s.start_ms // 1000, "ends_in_s": max(0, (s.end_ms - now) // 1000)}
                        for s in sorted(live.unit.sessions.values(), key=lambda s: s.sid)]
            indicator = live.unit.indicator
        return {"unit": live.unit_id, "boot": uplink.boot, "state": "active" if sessions else "dormant",
                "indicator": indicator, "sessions": sessions, "gps": self.gps.as_dict(),
                "link": {"broker": uplink.broker.url, "connected": uplink.connected, "acked": uplink.stats.acked,
                         "outbox": len(uplink.outbox)}}

    def close(self) -> None:
        """Shut down cleanly: control socket, GPS port released, sessions ended, outbox flushed."""
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.control_path)
        except FileNotFoundError:
            pass
        self._stream.close()
        self.live.close()
        self.indicator.close()


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        daemon: UnitDaemon = self.server.daemon  # type: ignore[attr-defined]
        for line in self.rfile:
            try:
                answer = daemon.request(json.loads(line))
            except ValueError:
                answer = {"ok": False, "error": "a request is one JSON object per line"}
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
