"""Byte sources for the GNSS receiver: a recorded trace file or a live serial port.

Both give the same ``read() -> bytes`` interface so the framer cannot tell a replay from a
receiver, which is the point of an emulator. Trace files are the gpsd regression logs: raw
receiver bytes with ``#`` comment lines, which are dropped (they are not receiver output)
while every other byte is kept as is, binary frames and broken lines included, because the
framer must cope with exactly those. Live sources go through pyserial's ``serial_for_url``
so that device paths and URLs (``socket://``, ``rfc2217://``, ``loop://``) all work.
"""

from __future__ import annotations

import os
import stat
from types import TracebackType
from typing import BinaryIO, Self

import serial
from tcu.firmware.errors import SourceError

DEFAULT_BAUDRATE = 9600
READ_TIMEOUT_S = 0.25  # idle time that ends a read (and, in iter_fixes, an epoch)
CHUNK = 4096


class _Closing:
    """Context-manager plumbing shared by the sources."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class TraceFile(_Closing):
    """A recorded log: yields its lines minus ``#`` comment lines; b"" at end of file."""

    is_live = False

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")
        except OSError as exc:
            raise SourceError("cannot open trace file %s: %s" % (path, exc.strerror)) from exc
        self._at_line_start = True

    def read(self) -> bytes:
        """Return the next chunk of receiver bytes, b"" at end of file."""
        try:
            while True:
                # readline() bounded by CHUNK: a long binary run without b"\n" is returned in
                # pieces; only a piece that starts a line can be a comment.
                piece = self._file.readline(CHUNK)
                if not piece:
                    return b""
                at_start, self._at_line_start = self._at_line_start, piece.endswith(b"\n")
                if at_start and piece.startswith(b"#"):
                    while not self._at_line_start:  # skip the rest of a long comment
                        rest = self._file.readline(CHUNK)
                        if not rest:
                            return b""
                        self._at_line_start = rest.endswith(b"\n")
                    continue
                return piece
        except (OSError, ValueError) as exc:
            raise SourceError("cannot read trace file %s: %s" % (self.path, exc)) from exc

    def close(self) -> None:
        self._file.close()


class SerialSource(_Closing):
    """A live receiver through pyserial; read() returns b"" when the timeout expires."""

    is_live = True

    def __init__(self, url: str, baudrate: int) -> None:
        self.url = url
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=READ_TIMEOUT_S)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SourceError("cannot open serial source %s: %s" % (url, exc)) from exc

    def read(self) -> bytes:
        """Return what arrived (at least one byte unless the read timeout expired)."""
        try:
            first = self._port.read(1)  # blocks up to READ_TIMEOUT_S
            if not first:
                return b""
            return bytes(first) + bytes(self._port.read(min(self._port.in_waiting, CHUNK)))
        except (serial.SerialException, OSError) as exc:
            raise SourceError("cannot read serial source %s: %s" % (self.url, exc)) from exc

    def close(self) -> None:
        self._port.close()


def _is_url(spec: str) -> bool:
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def open_source(spec: str, baudrate: int | None = None) -> TraceFile | SerialSource:
    """Open ``spec``: a regular file is a trace, a character device or pyserial URL is live.

    Raises SourceError naming ``spec`` if it does not exist or cannot be opened.
    """
    if _is_url(spec):
        return SerialSource(spec, baudrate or DEFAULT_BAUDRATE)
    try:
        mode = os.stat(spec).st_mode
    except OSError as exc:
        raise SourceError("no such GNSS source: %s (%s)" % (spec, exc.strerror)) from exc
    if stat.S_ISCHR(mode):
        return SerialSource(spec, baudrate or DEFAULT_BAUDRATE)
    if stat.S_ISREG(mode):
        return TraceFile(spec)
    raise SourceError("not a trace file, serial device or URL: %s" % spec)
