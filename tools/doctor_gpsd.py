"""`tcu doctor`: is a gpsd running here, which receiver does it own, and how to share it.

On a Raspberry Pi gpsd usually owns the GPS (Debian and Raspberry Pi OS start it on the first
USB receiver); a unit that opens the same serial port fights it (each reads half of the bytes).
The remedy is to read gpsd instead: ``gps.source = "gpsd://127.0.0.1:2947/DEVICE"``.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from tcu.emulator.config import Config
from tcu.hal.gpsd import DEFAULT_PORT, parse_url
from tcu.tools.doctor_checks import FAIL, OK, WARN, Finding

LOCAL = ("127.0.0.1", DEFAULT_PORT)


def probe(host: str, port: int, timeout_s: float = 1.0) -> dict[str, Any] | None:
    """gpsd's VERSION and DEVICES at host:port, None if nothing answers there."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return None
    found: dict[str, Any] = {"release": "", "devices": []}
    with sock:
        try:
            sock.sendall(b"?DEVICES;\n")
            buf, deadline = b"", time.monotonic() + timeout_s
            while time.monotonic() < deadline and b'"DEVICES"' not in buf:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
        except OSError:
            return found if found["release"] else None
    for line in buf.splitlines():
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if report.get("class") == "VERSION":
            found["release"] = report.get("release", "")
        elif report.get("class") == "DEVICES":
            found["devices"] = [(d.get("path", "?"), d.get("driver", "")) for d in report.get("devices", [])]
    return found if found["release"] else None


def _devices(found: dict[str, Any]) -> str:
    return ", ".join("%s%s" % (path, " (%s)" % driver if driver else "") for path, driver in found["devices"]) \
        or "no device yet"


def check_gpsd_source(spec: str) -> Finding:
    """The GPS is gpsd://...: is gpsd there, with a receiver?"""
    host, port, device, _ = parse_url(spec)
    found = probe(host, port)
    if found is None:
        return Finding("gps", FAIL, "%s: no gpsd answers at %s:%d" % (spec, host, port),
                       "start it (sudo systemctl enable --now gpsd), or set gps.source to the serial device")
    paths = [path for path, _ in found["devices"]]
    if device and device not in paths:
        return Finding("gps", WARN, "%s: gpsd %s serves %s, not %s" % (spec, found["release"], _devices(found), device),
                       "add it to gpsd (DEVICES= in /etc/default/gpsd) or drop /DEVICE from the URL")
    if not paths:
        return Finding("gps", WARN, "%s: gpsd %s has no receiver" % (spec, found["release"]),
                       "plug the receiver in (gpsd's hotplug adds it) or list it in /etc/default/gpsd")
    return Finding("gps", OK, "%s: gpsd %s, %s" % (spec, found["release"], _devices(found)))


def check_gpsd(config: Config, where: tuple[str, int] = LOCAL) -> list[Finding]:
    """A local gpsd next to a unit that opens a serial port itself: say how to share."""
    if config.gps.startswith("gpsd://"):
        return []  # check_gps looked at it
    found = probe(*where)
    if found is None:
        return []
    url = "gpsd://%s:%d" % where
    owned = [path for path, _ in found["devices"]]
    if config.gps in owned:
        return [Finding("gpsd", WARN, "gpsd %s at %s:%d owns %s: the unit and gpsd would each read part of "
                                      "its bytes" % (found["release"], *where, config.gps),
                        "share it through gpsd: gps.source = \"%s%s\" (or --gps %s%s)" % (
                            url, config.gps, url, config.gps))]
    return [Finding("gpsd", OK, "gpsd %s at %s:%d serves %s; to share a receiver with it, use gps.source = "
                                "\"%s/DEVICE\"" % (found["release"], *where, _devices(found), url))]
