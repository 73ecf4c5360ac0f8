"""Live receivers through pyserial: device paths and any pyserial URL, baud detection,
and a reconnecting wrapper for receivers that come and go (USB unplugged, pty closed).

``serial_for_url`` takes device paths (``/dev/ttyACM0``, ``/dev/serial/by-id/...``) and URLs
(``socket://``, ``rfc2217://``, ``loop://``) alike. A device opened without a baud rate is
probed at 4800, 9600, 38400 and 115200 for checksum-valid sentences (``detect_baud``); the
bytes read at the rate that worked are handed out first, so none are lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import serial

from tcu.firmware.errors import SourceError

from .framer import NmeaFramer
from .source_base import CHUNK, Closing

DEFAULT_BAUDRATE = 9600
BAUD_RATES = (4800, 9600, 38400, 115200)
READ_TIMEOUT_S = 0.25  # idle time that ends a read (and, in iter_fixes, an epoch)
DETECT_WINDOW_S = 1.5  # per rate: long enough for one burst at 1 Hz
RETRY_S = 0.25  # pause between attempts to reopen a device that went away


def _open(url: str, baudrate: int, timeout: float) -> serial.Serial:
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise SourceError("cannot open serial source %s: %s" % (url, exc)) from exc


def probe(port: serial.Serial, window_s: float, enough: int | None = 2) -> tuple[bytes, list[str]]:
    """Read ``port`` for up to ``window_s``; return the bytes and the valid sentences in them.

    Stops early once ``enough`` sentences are valid (two by default: one could be luck on a
    noisy line); ``enough`` None reads the whole window.
    """
    framer, data = NmeaFramer(), bytearray()
    sentences: list[str] = []
    deadline = time.monotonic() + window_s
    try:
        while time.monotonic() < deadline and (enough is None or len(sentences) < enough):
            chunk = port.read(max(1, min(port.in_waiting, CHUNK)))
            data += chunk
            sentences += framer.feed(chunk)
    except (serial.SerialException, OSError) as exc:
        raise SourceError("cannot read serial source %s: %s" % (port.port, exc)) from exc
    return bytes(data), sentences


def detect_baud(url: str, rates: Sequence[int] = BAUD_RATES, window_s: float = DETECT_WINDOW_S,
                enough: int | None = 2) -> tuple[int, bytes]:
    """The first rate at which ``url`` gives checksum-valid NMEA, and the bytes read at it.

    Raises SourceError if the device cannot be opened or no rate gives a valid sentence.
    """
    for rate in rates:
        port = _open(url, rate, 0.05)
        try:
            data, sentences = probe(port, window_s, enough)
        finally:
            port.close()
        if sentences:
            return rate, data
    raise SourceError("no checksum-valid NMEA from %s at %s baud" % (
        url, "/".join(str(r) for r in rates)))


class SerialSource(Closing):
    """A live receiver through pyserial; read() returns b"" when the timeout expires.

    ``baudrate`` None means: detect it (device paths), or the default for URLs, where the
    baud rate means nothing (``socket://``) or is negotiated (``rfc2217://``).
    """

    is_live = True

    def __init__(self, url: str, baudrate: int | None = None,
                 detect_window_s: float = DETECT_WINDOW_S) -> None:
        self.url = url
        self._early = b""
        if baudrate is None and "://" not in url:
            baudrate, self._early = detect_baud(url, window_s=detect_window_s)
        self.baudrate = baudrate or DEFAULT_BAUDRATE
        self._port = _open(url, self.baudrate, READ_TIMEOUT_S)
        self._closed = False

    def read(self) -> bytes:
        """Return what arrived (at least one byte unless the read timeout expired)."""
        if self._early:
            early, self._early = self._early, b""
            return early
        try:
            first = self._port.read(1)  # blocks up to READ_TIMEOUT_S
            if not first:
                return b""
            return bytes(first) + bytes(self._port.read(min(self._port.in_waiting, CHUNK)))
        except (serial.SerialException, OSError) as exc:
            raise SourceError("cannot read serial source %s: %s" % (self.url, exc)) from exc
        except (TypeError, AttributeError, ValueError):
            # pyserial's read() racing close() from another thread (its fd already None in
            # select()): a shutdown, not a bug in the caller
            if self._closed:
                raise SourceError("serial source %s is closed" % self.url) from None
            raise

    def close(self) -> None:
        self._closed = True
        self._port.close()


class ReconnectingSource(Closing):
    """A live source that survives its device going away and coming back.

    A read error closes the port, calls ``on_event("disconnected: ...")`` and returns b""
    (so the stream flushes the epoch in progress); later reads try to reopen the same path
    every ``retry_s`` (returning b"" meanwhile, like a quiet receiver) and, once it opens,
    call ``on_event("reconnected")`` and carry on. The first open must succeed: a path that
    never existed is a SourceError at once, not an endless retry.
    """

    is_live = True

    def __init__(self, url: str, baudrate: int | None = None, retry_s: float = RETRY_S,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.url = url
        self.retry_s = retry_s
        self.on_event = on_event
        self.disconnects = 0
        self.reconnects = 0
        self._source: SerialSource | None = SerialSource(url, baudrate)
        self.baudrate = self._source.baudrate
        self._closed = False
        self._next_try = 0.0

    @property
    def connected(self) -> bool:
        return self._source is not None

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def read(self) -> bytes:
        if self._closed:
            raise SourceError("serial source %s is closed" % self.url)
        if self._source is None:
            wait = self._next_try - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, READ_TIMEOUT_S))
                return b""
            try:
                self._source = SerialSource(self.url, self.baudrate)
            except SourceError:
                self._next_try = time.monotonic() + self.retry_s
                return b""
            self.reconnects += 1
            self._event("reconnected to %s" % self.url)
        source = self._source  # close() from another thread may clear it at any moment
        if source is None:
            raise SourceError("serial source %s is closed" % self.url)
        try:
            return source.read()
        except SourceError as exc:
            if self._closed:
                raise
            source.close()
            self._source = None
            self.disconnects += 1
            self._next_try = time.monotonic() + self.retry_s
            self._event("disconnected: %s; retrying every %.2f s" % (exc, self.retry_s))
            return b""

    def close(self) -> None:
        self._closed = True
        if self._source is not None:
            self._source.close()
            self._source = None
