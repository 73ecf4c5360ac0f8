"""A running gpsd as the GNSS source: ``gpsd://HOST[:PORT][/DEVICE][?nmea]``.

On a Raspberry Pi gpsd usually owns the receiver (it configures it, feeds chrony, serves
several clients), so the unit is one more client instead of fighting it for the port. It
connects over TCP (loopback, port 2947 by default), sends ``?WATCH`` and reads gpsd's JSON:

* TPV reports are the fixes, by the same rules as NMEA epochs (hal/nmea.py): mode 2 or 3, a
  time (gpsd gives none before it knows the date) and a position, never (0, 0). gpsd may send
  several TPVs for one time as the receiver's sentences arrive; the last one of each time is
  the fix, handed out when a TPV of another time arrives or gpsd falls silent for
  ``SILENCE_S`` (as the serial path closes an epoch on a quiet line).
* SKY reports give the satellites used and HDOP of the fixes that follow.
* ``?nmea`` asks gpsd for the receiver's raw NMEA instead (``"nmea":true``), which goes
  through the HAL's own NMEA path like a serial line (``GpsdNmeaSource``).

The idle path (``positions_needed`` False) asks gpsd for no position decoding: gpsd 3.x has
no watch option that leaves TPVs out, so the unit keeps the JSON watch and reads, of each TPV,
its class, mode and time with one regular expression, and throws the rest of the line away
unparsed: no latitude or longitude is ever decoded (``Heartbeat``s only, as the NMEA idle path).
SKY, VERSION, DEVICES, DEVICE, WATCH and ERROR carry no position and are read as usual.

When gpsd goes away (restart, upgrade) the stream reconnects every second and watches again,
with ``on_event`` told each way; without ``reconnect`` it ends. A watched device that gpsd
reports deactivated ends a non-reconnecting stream too (``tcu fixes gpsd://... --no-reconnect``
on gpsfake exits when the log is done).
"""

from __future__ import annotations

import datetime
import json
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from tcu.firmware.errors import SourceError
from tcu.firmware.fix import MODE_2D, MODE_3D, Fix

from .idle import Heartbeat
from .source_base import Closing

DEFAULT_PORT = 2947
SILENCE_S = 0.25
RECONNECT_S = 1.0
_TPV_LITE = re.compile(rb'"class":"TPV"|"mode":(\d)|"time":"([^"]*)"')
_MAX_LINE = 1 << 20


def parse_url(url: str) -> tuple[str, int, str | None, bool]:
    """``gpsd://HOST[:PORT][/DEVICE][?nmea]`` to (host, port, device or None, raw NMEA)."""
    parts = urlsplit(url)
    if parts.scheme != "gpsd" or not parts.hostname:
        raise SourceError("not a gpsd URL: %r (gpsd://HOST[:PORT][/DEVICE])" % url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise SourceError("bad port in %r: %s" % (url, exc)) from None
    device = parts.path if parts.path not in ("", "/") else None
    if parts.query not in ("", "nmea", "nmea=1", "json"):
        raise SourceError("unknown option %r in %r: gpsd://HOST[:PORT][/DEVICE][?nmea]" % (parts.query, url))
    return parts.hostname, port, device, parts.query.startswith("nmea")


def iso_ms(text: str) -> int:
    """gpsd's ISO 8601 time ("2017-01-10T00:09:41.000Z") to Unix milliseconds."""
    when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return round(when.timestamp() * 1000)


def tpv_fix(tpv: dict[str, Any], sats: int | None = None, hdop_c: int | None = None) -> Fix | None:
    """The Fix of one TPV, or None if it is not one (no fix, no time, no position, (0, 0))."""
    mode, when, lat, lon = tpv.get("mode"), tpv.get("time"), tpv.get("lat"), tpv.get("lon")
    if mode not in (2, 3) or not isinstance(when, str) or not isinstance(lat, int | float) \
            or not isinstance(lon, int | float):
        return None
    lat_e7, lon_e7 = round(lat * 1e7), round(lon * 1e7)
    if (lat_e7 == 0 and lon_e7 == 0) or abs(lat_e7) > 900_000_000 or abs(lon_e7) > 1_800_000_000:
        return None
    alt = tpv.get("altMSL", tpv.get("alt"))
    speed, track = tpv.get("speed"), tpv.get("track")
    return Fix(iso_ms(when), lat_e7, lon_e7, MODE_3D if mode == 3 else MODE_2D,
               round(alt * 100) if mode == 3 and isinstance(alt, int | float) else None,
               round(speed * 1000) if isinstance(speed, int | float) else None,
               round(track * 100) if isinstance(track, int | float) else None, sats, hdop_c)


class GpsdConnection(Closing):
    """One client connection to gpsd, reopened after it drops (``reconnect``); lines of JSON
    (or NMEA) out, b"" when nothing came for ``timeout_s``."""

    def __init__(self, host: str, port: int, watch: dict[str, Any], *, reconnect: bool = True,
                 timeout_s: float = SILENCE_S) -> None:
        self.host, self.port, self.watch = host, port, watch
        self.reconnect, self.timeout_s = reconnect, timeout_s
        self.on_event: Callable[[str], None] | None = None
        self.bytes_in = 0
        self.connections = 0
        self.ended = False  # the connection dropped and is not reopened
        self._sock: socket.socket | None = None
        self._buf = b""
        self._closed = False
        self._sock = self._connect()  # now: a gpsd that is not there fails at the call

    @property
    def where(self) -> str:
        return "%s:%d" % (self.host, self.port)

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=2)
            sock.sendall(b"?WATCH=%s;\n" % json.dumps(self.watch, separators=(",", ":")).encode("ascii"))
        except OSError as exc:
            raise SourceError("cannot connect to gpsd at %s: %s (is gpsd running? `tcu doctor` looks)" % (
                self.where, exc.strerror or exc)) from exc
        sock.settimeout(self.timeout_s)
        self.connections += 1
        return sock

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def lines(self) -> list[bytes]:
        """The complete lines received next (may be empty after a quiet ``timeout_s``)."""
        if self._closed or self.ended:
            return []
        if self._sock is None:
            self._reopen()
            return []
        try:
            data = self._sock.recv(65536)
        except TimeoutError:
            return []
        except OSError as exc:
            if self._closed:
                return []
            data = b""
            self._event("gpsd at %s: %s" % (self.where, exc.strerror or exc))
        if not data:
            self._dropped()
            return []
        self.bytes_in += len(data)
        buf = self._buf + data
        cut = buf.rfind(b"\n") + 1
        self._buf = buf[cut:][-_MAX_LINE:]
        return buf[:cut].splitlines()

    def _dropped(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""
        if not self.reconnect:
            self.ended = True
            return
        self._event("gpsd at %s went away; reconnecting every %.0f s" % (self.where, RECONNECT_S))

    def _reopen(self) -> None:
        time.sleep(RECONNECT_S)
        if self._closed:
            return
        try:
            self._sock = self._connect()
        except SourceError:
            return
        self._event("gpsd at %s is back; watching again" % self.where)

    def close(self) -> None:
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None


class GpsdNmeaSource(Closing):
    """gpsd's raw NMEA as a byte source for the HAL's own NMEA path (``gpsd://...?nmea``)."""

    is_live = True

    def __init__(self, url: str, *, reconnect: bool = True) -> None:
        host, port, device, _ = parse_url(url)
        watch: dict[str, Any] = {"enable": True, "json": False, "nmea": True}
        if device:
            watch["device"] = device
        self.path = url
        self.conn = GpsdConnection(host, port, watch, reconnect=reconnect)

    @property
    def ended(self) -> bool:
        """gpsd closed the connection and it is not reopened: the stream ends."""
        return self.conn.ended

    def read(self) -> bytes:
        lines = [line for line in self.conn.lines() if line.startswith((b"$", b"!"))]
        return b"".join(line + b"\r\n" for line in lines)

    def close(self) -> None:
        self.conn.close()


class GpsdStream:
    """Fixes (or, while no position is needed, Heartbeats) from gpsd's JSON; the interface of
    ``FixStream`` (``items()``, iteration over fixes, ``positions_needed``, ``close``)."""

    is_live = True

    def __init__(self, url: str, positions_needed: bool = True, *, reconnect: bool = True) -> None:
        host, port, device, _ = parse_url(url)
        self.url, self.device = url, device
        watch: dict[str, Any] = {"enable": True, "json": True}
        if device:
            watch["device"] = device
        self.conn = GpsdConnection(host, port, watch, reconnect=reconnect)
        self.source = self  # what tools look at for reconnect events and progress
        self._positions_needed = positions_needed
        self.counts: dict[str, int] = {}  # reports by class, and dropped epochs by cause
        self.fixes_made = 0
        self.heartbeats = self.heartbeats_with_fix = 0
        self.devices: list[str] = []
        self.release = ""
        self._pending: tuple[str, dict[str, Any]] | None = None  # (time, TPV) not handed out yet
        self._last_beat: tuple[str, bytes] | None = None  # (time, TPV line) of the last heartbeat
        self._sats: int | None = None
        self._hdop_c: int | None = None
        self._ready: deque[Fix | Heartbeat] = deque()
        self._done = False

    @property
    def on_event(self) -> Callable[[str], None] | None:
        return self.conn.on_event

    @on_event.setter
    def on_event(self, callback: Callable[[str], None] | None) -> None:
        self.conn.on_event = callback

    @property
    def positions_needed(self) -> bool:
        return self._positions_needed

    @positions_needed.setter
    def positions_needed(self, needed: bool) -> None:
        if needed and not self._positions_needed and self._last_beat is not None:
            # Woken on a heartbeat: its TPV is the first fix (later TPVs of its time update it).
            self._tpv(json.loads(self._last_beat[1]))
        if not needed:
            self._pending = None  # a position not handed out is not kept
        self._last_beat = None
        self._positions_needed = needed

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def __iter__(self) -> Iterator[Fix]:
        return (item for item in self.items() if isinstance(item, Fix))

    def items(self) -> Iterator[Fix | Heartbeat]:
        while True:
            while self._ready:
                yield self._ready.popleft()
            if self._done:
                return
            self._fill()

    def _fill(self) -> None:
        lines = self.conn.lines()
        if not lines:
            self._flush()  # quiet for SILENCE_S, or gone: the last TPV of its time is the fix
            if self.conn.ended:
                self._done = True
            return
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if not line.startswith(b'{"class":"'):
            return
        kind = line[10:line.find(b'"', 10)].decode("ascii", "replace")
        self._count(kind)
        if kind == "TPV":
            if self._positions_needed:
                self._tpv(self._json(line))
            else:
                self._heartbeat(line)
            return
        report = self._json(line)
        if kind == "SKY":
            self._sky(report)
        elif kind in ("DEVICES", "DEVICE"):
            self._devices(kind, report)
        elif kind == "VERSION":
            self.release = str(report.get("release", ""))

    def _json(self, line: bytes) -> dict[str, Any]:
        try:
            report = json.loads(line)
        except ValueError:
            self._count("bad_json")
            return {}
        return report if isinstance(report, dict) else {}

    def _tpv(self, tpv: dict[str, Any]) -> None:
        if self.device and tpv.get("device") not in (None, self.device):
            return
        when = tpv.get("time")
        if tpv.get("mode", 0) < 2:
            self._count("no_fix")
            self._flush()
            return
        if not isinstance(when, str):
            self._count("no_date")
            return
        if self._pending is not None and self._pending[0] != when:
            self._flush()
        self._pending = (when, tpv)

    def _flush(self) -> None:
        if self._pending is None:
            return
        _, tpv = self._pending
        self._pending = None
        try:
            fix = tpv_fix(tpv, self._sats, self._hdop_c)
        except (ValueError, TypeError, OverflowError):
            fix = None
        if fix is None:
            self._count("no_fix")
            return
        self.fixes_made += 1
        self._ready.append(fix)

    def _heartbeat(self, line: bytes) -> None:
        """The idle path: mode and time of a TPV, read without decoding the rest of it."""
        mode, when = None, None
        for m in _TPV_LITE.finditer(line):
            if m.group(1) is not None and mode is None:
                mode = int(m.group(1))
            elif m.group(2) is not None and when is None:
                when = m.group(2).decode("ascii", "replace")
        if when is None or (self._last_beat is not None and self._last_beat[0] == when):
            return
        try:
            time_ms = iso_ms(when)
        except ValueError:
            self._count("bad_time")
            return
        has_fix = mode in (2, 3)
        self._last_beat = (when, line)
        self.heartbeats += 1
        self.heartbeats_with_fix += has_fix
        self._ready.append(Heartbeat(time_ms, time_ms % 86_400_000, has_fix))

    def _sky(self, sky: dict[str, Any]) -> None:
        sats = sky.get("satellites")
        if isinstance(sats, list):
            self._sats = sum(1 for s in sats if isinstance(s, dict) and s.get("used"))
        elif isinstance(sky.get("uSat"), int):
            self._sats = sky["uSat"]
        hdop = sky.get("hdop")
        if isinstance(hdop, int | float):
            self._hdop_c = round(hdop * 100)

    def _devices(self, kind: str, report: dict[str, Any]) -> None:
        listed = report.get("devices", []) if kind == "DEVICES" else [report]
        for dev in listed:
            if not isinstance(dev, dict):
                continue
            path = dev.get("path")
            if not isinstance(path, str) or (self.device and path != self.device):
                continue
            if dev.get("activated") in (0, None) and kind == "DEVICE":
                if path in self.devices:
                    self.devices.remove(path)
                if not self.devices and not self.conn.reconnect:
                    self._flush()
                    self._done = True  # the receiver gpsd read is gone: a non-reconnecting stream ends
            elif path not in self.devices:
                self.devices.append(path)

    def summary(self) -> dict[str, Any]:
        """What gpsd gave, as ``hal.summary.summarize`` words it."""
        from .summary import reason

        dropped = {key: self.counts[key] for key in ("no_date", "no_fix") if self.counts.get(key)}
        out: dict[str, Any] = {
            "source": self.url, "framing": "gpsd-json", "bytes": self.conn.bytes_in,
            "sentences": self.counts.get("TPV", 0), "bad_checksum": self.counts.get("bad_json", 0),
            "fixes": self.fixes_made, "heartbeats": self.heartbeats,
            "heartbeats_with_fix": self.heartbeats_with_fix, "heartbeats_dated": self.heartbeats,
            "epochs_dropped": dropped, "gpsd": {"release": self.release, "devices": list(self.devices),
                                                "reports": {k: v for k, v in self.counts.items() if k[0].isupper()}},
        }
        if not self.counts.get("TPV"):
            out["reason"] = "gpsd at %s sent no TPV report (%s)" % (
                self.conn.where, "devices: %s" % ", ".join(self.devices) if self.devices else "it has no device")
        else:
            out["reason"] = reason(out)
        return out

    def close(self) -> None:
        self._done = True
        self.conn.close()

    def __enter__(self) -> GpsdStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
