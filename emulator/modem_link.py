"""`tcu run --modem PORT`: the modem thread. It owns the modem's AT port (one command at a
time, never on the GPS reader's or the firmware's thread), keeps ModemStatus fresh (a poll
every poll_s, registration URCs at once), tells the link whether there is a data path, and
sends the SMS fallback (emulator/sms_fallback.py) when asked.

A port that fails (a modem reset re-creates its ports) is reopened every RETRY_S, set up
again and its GNSS engine switched on again; a stuck modem times out command by command and
the unit keeps running on what it last knew.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tcu.hal.at import ModemError
from tcu.hal.modem import PROFILES, ModemDriver, ModemStatus
from tcu.hal.modem_parse import Registration, ServingCell
from tcu.hal.modem_port import ModemPort, PortGone
from tcu.protocol import messages

log = logging.getLogger("tcu.modem")
RETRY_S = 0.5
DEBUG = bool(os.environ.get("TCU_SIM_DEBUG"))
URC_WAIT_S = 0.1


def radio_map(status: ModemStatus) -> dict[int, Any]:
    """The status uplink's radio map (protocol/tcu.cddl `radio`): no cell identity."""
    radio: dict[int, Any] = {messages.RADIO_REG: status.reg.stat}
    if status.operator:
        radio[messages.RADIO_OPERATOR] = status.operator[:32]
    if status.rat:
        radio[messages.RADIO_RAT] = status.rat[:32]
    if status.signal_dbm is not None:
        radio[messages.RADIO_SIGNAL_DBM] = max(-150, min(0, status.signal_dbm))
    return radio


class ModemLink:
    """on_path(up, radio) is called from the modem thread whenever the data path changes."""

    def __init__(self, port: str, profile: str = "auto", apn: str | None = None, poll_s: float = 10.0,
                 gnss: bool = True, on_path: Callable[[bool, dict[int, Any]], None] | None = None) -> None:
        self.url = port
        self.profile = None if profile == "auto" else PROFILES[profile]
        self.apn = apn
        self.poll_s = poll_s
        self.gnss = gnss
        self.on_path = on_path
        self.status = ModemStatus(error="not opened yet")
        self.polls = 0
        self.resets = 0
        self._up = False
        self._sms: queue.Queue[tuple[str, int, Callable[[int | None, str], None]]] = queue.Queue()
        self._stop = threading.Event()
        self._driver: ModemDriver | None = None
        self._thread = threading.Thread(target=self._run, name="tcu-modem", daemon=True)
        self._thread.start()

    def as_dict(self) -> dict[str, Any]:
        return dict(self.status.as_dict(), port=self.url, polls=self.polls, resets=self.resets)

    def send_sms(self, pdu_hex: str, length: int, done: Callable[[int | None, str], None]) -> None:
        """Queue an SMS; done(message reference or None, error) runs on the modem thread."""
        self._sms.put((pdu_hex, length, done))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    # -- the modem thread ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = ModemPort(self.url, on_urc=self._urc)
            except PortGone as err:
                self._lost(str(err))
                self._stop.wait(RETRY_S)
                continue
            try:
                self._session(port)
            except PortGone as err:
                self.resets += 1
                self._lost(str(err))
            finally:
                port.close()
                self._driver = None
            self._stop.wait(RETRY_S)

    def _session(self, port: ModemPort) -> None:
        driver = ModemDriver(port, self.profile)
        while not self._stop.is_set():  # setup until it works (a modem that just booted)
            try:
                self.status = replace(driver.setup(), error="")
                if self.apn:
                    port.command('AT+CGDCONT=1,"IP","%s"' % self.apn)
                if self.gnss:
                    driver.gnss(True)
                break
            except PortGone:
                raise
            except ModemError as err:
                self.status = replace(self.status, error=str(err))
                self._stop.wait(RETRY_S)
        self._driver = driver
        next_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_poll:
                self._poll(driver)
                next_poll = time.monotonic() + self.poll_s
            self._send_queued(driver)
            port.wait_urcs(URC_WAIT_S)

    def _poll(self, driver: ModemDriver) -> None:
        try:
            self.status = driver.poll()
            self.polls += 1
        except PortGone:
            raise
        except ModemError as err:  # stuck or refusing: keep the last state, say why
            self.status = replace(driver.status, error=str(err))
            log.warning("modem: %s", err)
        self._path(self.status.registered)

    def _urc(self, line: str) -> None:
        driver = self._driver
        if driver is None:
            return
        try:
            if driver.on_registration_urc(line):
                self.status = replace(self.status, reg=driver.status.reg, cs_reg=driver.status.cs_reg)
                self._path(self.status.registered)
        except ModemError as err:
            log.debug("modem: bad URC %r: %s", line[:60], err)

    def _send_queued(self, driver: ModemDriver) -> None:
        while True:
            try:
                pdu, length, done = self._sms.get_nowait()
            except queue.Empty:
                return
            try:
                done(driver.send_sms(pdu, length), "")
            except PortGone:
                self._sms.put((pdu, length, done))  # the next session sends it
                raise
            except ModemError as err:
                done(None, str(err))

    def _lost(self, error: str) -> None:
        gone = Registration(4)  # unknown: no port, no registration to speak of
        self.status = replace(self.status, error=error, gnss_on=False, reg=gone, cs_reg=gone, operator=None,
                              signal_dbm=None, cell=ServingCell(""))
        self._path(False)

    def _path(self, up: bool) -> None:
        if up != self._up:
            self._up = up
            print("tcu run: modem: data path %s (%s)%s" % ("up" if up else "down", self.status.reg.name,
                  " %.3f" % time.time() if DEBUG else ""), file=sys.stderr, flush=True)
        if self.on_path is not None:  # every poll: the radio map in the status stays current
            self.on_path(up, radio_map(self.status))
