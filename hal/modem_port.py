"""The AT core on a real port: a serial device or any pyserial URL (socket://, rfc2217://).

Blocking, for one thread (the unit's modem thread, never the GPS reader's or the firmware's):
command() writes a line, reads until its final result (URCs go to on_urc as they come) and
returns the intermediate lines or raises the ModemError the core produced; wait_urcs()
reads URCs between commands. A port that fails (a modem reset re-creates its ports) raises
PortGone, and the caller reopens it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import serial

from tcu.hal.at import AtConnection, Failure, ModemError, Noise, Reply, Transmit, Urc

log = logging.getLogger("tcu.modem")
READ_S = 0.05


class PortGone(ModemError):
    """The modem's port failed or closed (unplugged, reset)."""


class ModemPort:
    def __init__(self, url: str, baudrate: int = 115200, on_urc: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.on_urc = on_urc
        self.clock = clock
        self.noise = 0  # lines neither response nor known URC
        self.at = AtConnection()
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=READ_S, write_timeout=2)
        except (serial.SerialException, OSError, ValueError) as err:
            raise PortGone("cannot open modem port %s: %s" % (url, err)) from None

    def close(self) -> None:
        self._port.close()

    def _read(self) -> bytes:
        try:
            first = self._port.read(1)
            if not first:
                return b""
            return bytes(first) + bytes(self._port.read(self._port.in_waiting))
        except (serial.SerialException, OSError, TypeError) as err:  # TypeError: pyserial on a closed fd
            raise PortGone("modem port %s failed: %s" % (self.url, err)) from None

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as err:
            raise PortGone("modem port %s failed: %s" % (self.url, err)) from None

    def _dispatch(self, events: list[object]) -> Reply | Failure | None:
        end: Reply | Failure | None = None
        for event in events:
            if isinstance(event, Urc) and self.on_urc is not None:
                self.on_urc(event.line)
            elif isinstance(event, Transmit):
                self._write(event.data)
            elif isinstance(event, Noise):
                self.noise += 1
                log.debug("modem noise: %s (%s)", event.line[:60], event.why)
            elif isinstance(event, Reply | Failure):
                end = event
        return end

    def command(self, line: str, timeout_s: float | None = None, payload: bytes | None = None) -> list[str]:
        """Run one command; its intermediate lines, or the CommandError/AtTimeout it ended with."""
        self._write(self.at.send(line, self.clock(), timeout_s, payload))
        while True:
            data = self._read()
            now = self.clock()
            end = self._dispatch(list(self.at.feed(data, now)) if data else [])
            if end is None:
                end = self._dispatch(list(self.at.timeout(now)))
            if isinstance(end, Reply):
                return list(end.lines)
            if isinstance(end, Failure):
                raise end.error

    def wait_urcs(self, seconds: float) -> None:
        """Read (and dispatch) URCs for up to `seconds`."""
        deadline = self.clock() + seconds
        while self.clock() < deadline:
            data = self._read()
            if data:
                self._dispatch(list(self.at.feed(data, self.clock())))
