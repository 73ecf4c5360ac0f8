"""Byte sources for the GNSS receiver, chosen by path or URL; one small module per kind.

All give the same ``read() -> bytes`` interface (``source_base.Source``) so the framer cannot
tell a replay from a receiver, which is the point of an emulator:

* a regular file is a recorded trace (``trace.TraceFile``), read as fast as possible, or at
  its original timing times ``speed`` (``pacer.PacedTrace``);
* a character device (``/dev/ttyACM0``, ``/dev/serial/by-id/...``) or a pyserial URL
  (``socket://``, ``rfc2217://``, ``loop://``) is a live receiver (``serial_port``),
  optionally wrapped to reconnect when the device goes away.
"""

from __future__ import annotations

import os
import stat

from tcu.firmware.errors import SourceError

from .pacer import PacedTrace
from .serial_port import DEFAULT_BAUDRATE, ReconnectingSource, SerialSource
from .source_base import CHUNK, Source
from .trace import TraceFile

__all__ = ["CHUNK", "DEFAULT_BAUDRATE", "PacedTrace", "ReconnectingSource", "SerialSource",
           "Source", "TraceFile", "open_source"]


def _is_url(spec: str) -> bool:
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def open_source(spec: str, baudrate: int | None = None, *, speed: float | None = None,
                reconnect: bool = False) -> Source:
    """Open ``spec``: a regular file is a trace, a character device or pyserial URL is live.

    ``baudrate`` None detects it on a device. ``speed`` paces a trace at its original timing
    times ``speed`` (None: as fast as possible). ``reconnect`` keeps a live device open
    across unplugs. Raises SourceError naming ``spec`` if it does not exist or cannot be opened.
    """
    if _is_url(spec):
        if reconnect:
            return ReconnectingSource(spec, baudrate)
        return SerialSource(spec, baudrate)
    try:
        mode = os.stat(spec).st_mode
    except OSError as exc:
        raise SourceError("no such GNSS source: %s (%s)" % (spec, exc.strerror)) from exc
    if stat.S_ISCHR(mode):
        return ReconnectingSource(spec, baudrate) if reconnect else SerialSource(spec, baudrate)
    if stat.S_ISREG(mode):
        return TraceFile(spec) if speed is None else PacedTrace(spec, speed)
    raise SourceError("not a trace file, serial device or URL: %s" % spec)
