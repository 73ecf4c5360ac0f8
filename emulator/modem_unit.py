"""The unit's modem side in `tcu run`: the modem thread (emulator/modem_link.py) wired to
the live unit's link, and the SMS fallback (emulator/sms_fallback.py) checked on a timer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tcu.emulator.config import Config
from tcu.emulator.live import LiveUnit
from tcu.emulator.modem_link import ModemLink
from tcu.emulator.sms_fallback import SmsFallback, Watched
from tcu.firmware.errors import UsageError
from tcu.firmware.services import PURPOSE_NAMES
from tcu.hal.modem_parse import mask
from tcu.hal.sms_pdu import encode_submit

log = logging.getLogger("tcu.modem")
CHECK_S = 0.2


class ModemUnit:
    def __init__(self, live: LiveUnit, config: Config) -> None:
        assert config.modem
        self.live = live
        self.sms_number = config.sms_number
        self.fallback = SmsFallback(live.unit_id, live.uplink.boot, config.sms_after_s)
        self.sent: list[dict[str, Any]] = []  # SMS sent or failed, for status and tests
        self.modem = ModemLink(config.modem, config.modem_profile, config.apn, config.modem_poll_s,
                               on_path=live.set_data_path)
        live.on_publish = lambda action: self.fallback.published(action, time.monotonic())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcu-sms", daemon=True)
        self._thread.start()

    def apply(self, config: Config) -> None:
        self.sms_number = config.sms_number
        self.fallback.after_s = config.sms_after_s
        self.modem.poll_s = config.modem_poll_s

    def as_dict(self) -> dict[str, Any]:
        return dict(self.modem.as_dict(), sms_sent=sum(1 for s in self.sent if s["ok"]),
                    sms_failed=sum(1 for s in self.sent if not s["ok"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.modem.close()

    def _pending(self, key: tuple[int, int]) -> bool:
        return self.live.uplink.outbox.get(key) is not None

    def _run(self) -> None:
        while not self._stop.wait(CHECK_S):
            if not self.sms_number:
                continue
            with self.live.lock:  # the firmware's publishes and the fallback's view stay in step
                due = self.fallback.due(time.monotonic(), self._pending)
            for watched, envelope in due:
                self._send(watched, envelope)

    def _send(self, watched: Watched, envelope: bytes) -> None:
        number = self.sms_number or ""
        try:
            pdu, length = encode_submit(number, envelope)
        except UsageError as err:
            log.warning("SMS fallback of session %d: %s", watched.sid, err)
            return
        purpose = PURPOSE_NAMES.get(watched.purpose, "unknown")
        with self.live.lock:  # on the record before it leaves, like every disclosure
            assert watched.report is not None
            self.live.audit.append(self.live.now_ms() // 1000, self.live.uplink.boot, watched.report.seq,
                                   watched.sid, "%s (SMS to %s)" % (purpose, mask(number)), envelope)
        began = time.monotonic()

        def done(reference: int | None, error: str) -> None:
            self.sent.append({"session": watched.sid, "ok": reference is not None, "error": error,
                              "took_s": round(time.monotonic() - began, 3)})
            if reference is None:
                log.warning("SMS fallback of session %d failed: %s", watched.sid, error)

        self.modem.send_sms(pdu, length, done)
