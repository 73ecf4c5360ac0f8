"""Assemble decoded NMEA sentences into one ``Fix`` per epoch (one UTC time of day).

A receiver reports each measurement epoch in several sentences (RMC, GGA, GNS, GLL, VTG,
GSA, ZDA), from one or several talkers (GP, GN, GL, GA, GB, BD, GQ, QZ, ...). None of them
alone is a complete fix: RMC has the date, speed and course but no altitude; GGA has the
altitude, quality and satellites but no date. The assembler merges everything that shares a
time of day, and emits the epoch's Fix when a sentence with another time arrives (or at
``flush``). Untimed sentences (VTG, GSA) belong to the epoch in progress.

Rules, chosen to be safe for a telematics unit and to match gpsd on the recorded logs
(bench/gpsd_conformance.py):

* No fix without a known date: from a valid RMC or a ZDA, else carried over from the last
  dated epoch (stepping one day when the time of day wraps past midnight). gpsd does not
  report a time without a date either. The date of a void RMC is not trusted: receivers
  without a fix report their unset clock (mtk-3301.log: 1980-01-05).
* No fix if any timed sentence of the epoch says there is none (RMC/GLL status V, GGA
  quality 0, 7 manual or 8 simulator, FAA mode N/M/S, GNS all N), nor from empty or
  malformed coordinates: never a (0, 0) fix. A GSA "no fix" (type 1) does not veto: GSA
  has no time and receivers send it before or after the timed sentences of its epoch
  (quectel.log: the GSA of the next, fixless epoch follows the last valid RMC).
* Position when sentences disagree: the LAST position-carrying sentence of the epoch wins.
  That is what gpsd reports (each sentence overwrites its fix and the epoch's last report
  carries the last one); it matches gpsd on every disagreeing epoch of the logs
  (ch-4701.log RMC then GGA, humminbird-M37.log GGA/GLL in both orders).
* mode 3 when a GGA/GNS of the epoch with a fix quality gives an altitude, or a GSA of the
  epoch says 3D; else 2 (an RMC-only epoch is 2D: it has no altitude).
* Speed and course come from RMC, else VTG; satellites and HDOP from the last GGA/GNS/GSA.
* An epoch whose time repeats the previous fix's exactly (its sentences were split by
  another one) is dropped and counted as "repeated_epoch". Time going backwards (a spliced
  log, a receiver reset) or jumping forward by more than ``JUMP_MS`` (a receiver's week
  rollover bug, a long outage) is counted ("time_backwards", "time_jump") and the fix is
  still reported with the receiver's time: its position is valid, and the consumer's clock
  decides (the replay's clock never steps back; the pacer does not sleep across a jump).
* A sentence whose content cannot be decoded (pynmea2 or field errors) is counted in
  ``counts["bad_sentence"]`` and skipped; it never raises.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable

from tcu.firmware.fix import MODE_2D, MODE_3D, Fix

from .nmea_decode import Report, decode

_DAY_MS = 86_400_000
JUMP_MS = 600_000  # a forward step between fixes larger than this is counted as a jump
_UNIX_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


class _Epoch:
    """Everything learnt so far about one time of day."""

    def __init__(self, tod_ms: int | None) -> None:
        self.tod_ms = tod_ms
        self.date: datetime.date | None = None
        self.no_fix = False
        self.pos: tuple[int, int] | None = None
        self.alt_cm: int | None = None
        self.speed_mms: int | None = None
        self.course_cdeg: int | None = None
        self.vtg_speed_mms: int | None = None
        self.vtg_course_cdeg: int | None = None
        self.sats: int | None = None
        self.hdop_c: int | None = None
        self.gsa_mode: int | None = None
        self.three_d = False

    def add(self, rep: Report) -> None:
        fix = rep.fix
        if fix is False:
            self.no_fix = True
        elif rep.date is not None:
            self.date = rep.date
        if rep.gsa_mode is not None:
            self.gsa_mode = rep.gsa_mode
        if rep.lat_e7 is not None and rep.lon_e7 is not None:
            self.pos = (rep.lat_e7, rep.lon_e7)
        kind = rep.kind
        if kind == "VTG":
            if rep.speed_mms is not None:
                self.vtg_speed_mms = rep.speed_mms
            if rep.course_cdeg is not None:
                self.vtg_course_cdeg = rep.course_cdeg
        else:
            if fix and rep.alt_cm is not None and (kind == "GGA" or kind == "GNS"):
                self.alt_cm = rep.alt_cm
                self.three_d = True
            if rep.speed_mms is not None:
                self.speed_mms = rep.speed_mms
            if rep.course_cdeg is not None:
                self.course_cdeg = rep.course_cdeg
        if rep.sats is not None:
            self.sats = rep.sats
        if rep.hdop_c is not None:
            self.hdop_c = rep.hdop_c


class CycleEnd:
    """Which sentence ends a receiver's epoch, learnt as gpsd does, to close epochs early.

    On a live receiver an epoch is otherwise complete only when the next one starts (a
    second later) or the line falls silent (the read timeout): a crash report would wait
    for either. A receiver sends the same sentences in the same order every second, so
    when two epochs in a row ended with the same sentence (its type and its position in
    the epoch), or one ended in silence, an epoch is closed as soon as that sentence
    arrives. Anything more that arrives before the next epoch starts unlearns it: back to
    waiting, until relearnt.
    """

    __slots__ = ("learned", "_previous", "_count", "_last", "_closed_early")

    def __init__(self) -> None:
        self.learned: tuple[str, int] | None = None
        self._previous: tuple[str, int] | None = None  # how the last epoch closed by its successor ended
        self._count = 0  # sentences in the epoch in progress
        self._last: tuple[str, int] | None = None
        self._closed_early = False

    def opened(self, tod_ms: int | None, closed_one: bool) -> None:
        """A new epoch starts; ``closed_one``: it completed the one in progress."""
        if closed_one and self._last is not None:
            self.learned = self._last if self._last == self._previous else None
            self._previous = self._last
        elif self._closed_early and tod_ms is None:
            self.learned = self._previous = None  # an untimed sentence after the end: not the end
        self._closed_early = False
        self._count, self._last = 0, None

    def added(self, kind: str) -> bool:
        """A sentence joined the epoch in progress; True if it is the learnt last one."""
        self._count += 1
        self._last = (kind, self._count)
        return self._last == self.learned

    def closed_early(self) -> None:
        self._closed_early = True

    def silence(self) -> None:
        """The line fell silent (the read timed out): the last sentence ended the cycle.

        Silence is a surer sign than a successor, so one is enough to learn from: the unit
        that wakes for a crash decodes a single epoch, and the next one closes early.
        """
        if self._last is not None:
            self.learned = self._previous = self._last

    def late(self) -> None:
        """A sentence of an epoch already closed early arrived: its end was not learnt right."""
        self.learned = self._previous = None
        self._closed_early = False


class EpochAssembler:
    """Feed sentences with ``push``; get back the Fix of each epoch once it is complete."""

    def __init__(self, decoder: Callable[[str], Report | None] = decode) -> None:
        self.decoder = decoder
        self.counts: dict[str, int] = {}
        self._epoch: _Epoch | None = None
        self._ref: tuple[datetime.date, int] | None = None  # last known (date, tod_ms)
        self._last_time_ms: int | None = None
        self._resync: list[int | None] | None = None  # [time of day to skip] after resume()
        # Live sources: close an epoch on its learnt last sentence (see CycleEnd).
        self.close_early = False
        self.cycle = CycleEnd()
        self._early_tod: int | None = None  # the time of the epoch last closed early

    def _count(self, cause: str) -> None:
        self.counts[cause] = self.counts.get(cause, 0) + 1

    def push(self, sentence: str) -> list[Fix]:
        """Add one checksum-valid sentence; return the fixes of the epochs it completed."""
        return self.push_all((sentence,))

    def push_all(self, sentences: Iterable[str]) -> list[Fix]:
        """``push`` for each sentence in turn, in one call."""
        out: list[Fix] = []
        decoder = self.decoder
        for sentence in sentences:
            try:
                rep = decoder(sentence)
            except (ValueError, TypeError, IndexError, ArithmeticError):
                self._count("bad_sentence")
                continue
            if rep is None:
                continue
            kind = rep.kind
            if kind == "ZDA":
                # ZDA only dates the stream: some receivers send it for the PPS second, not
                # for the epoch in progress, so it neither opens nor closes an epoch.
                if rep.date is not None and rep.tod_ms is not None:
                    self._ref = (rep.date, rep.tod_ms)
                continue
            tod_ms = rep.tod_ms
            if kind == "GLL" and tod_ms is None:
                continue  # pre-NMEA-2.0 GLL: no time, cannot be placed in an epoch
            if self._resync is not None:
                # Resumed mid-stream: the epoch in progress lost its first sentences; skip it.
                if tod_ms is None or kind in ("VTG", "GSA"):
                    continue
                if self._resync[0] is None:
                    self._resync[0] = tod_ms
                if tod_ms == self._resync[0]:
                    continue
                self._resync = None
            epoch = self._epoch
            if epoch is None or (kind != "VTG" and kind != "GSA"
                                 and (tod_ms is None or tod_ms != epoch.tod_ms)):
                # A new time of day, or a position sentence with an empty time (a receiver
                # without fix): the epoch in progress is complete. An untimed epoch collects
                # what follows until the next timed sentence, and never gives a fix.
                epoch = self._open_epoch(tod_ms, out)
            epoch.add(rep)
            if self.close_early:
                self._after_add(kind, out)
        return out

    def _open_epoch(self, tod_ms: int | None, out: list[Fix]) -> _Epoch:
        """Complete the epoch in progress into ``out``, if any, and start one at ``tod_ms``."""
        closed_one = self._epoch is not None
        if closed_one:
            self._close_epoch(out)
        if self.close_early:
            if self._early_tod is not None and tod_ms == self._early_tod:
                self.cycle.late()
            self.cycle.opened(tod_ms, closed_one)
            self._early_tod = None
        epoch = self._epoch = _Epoch(tod_ms)
        return epoch

    def _after_add(self, kind: str, out: list[Fix]) -> None:
        """Live sources: close the epoch now if ``kind`` was its learnt last sentence."""
        epoch = self._epoch
        if self.cycle.added(kind) and epoch is not None and epoch.tod_ms is not None:
            self._early_tod = epoch.tod_ms
            self._close_epoch(out)
            self.cycle.closed_early()

    def flush(self) -> list[Fix]:
        """Close the epoch in progress (end of stream); return its Fix if it has one."""
        out: list[Fix] = []
        self._close_epoch(out)
        return out

    def _close_epoch(self, out: list[Fix]) -> None:
        """``flush`` into ``out`` (once per second of every trace: no list of its own)."""
        epoch, self._epoch = self._epoch, None
        if epoch is None or epoch.tod_ms is None:
            return
        if epoch.date is not None:
            self._ref = (epoch.date, epoch.tod_ms)
        fix = self._make_fix(epoch)
        if fix is None:
            return
        last = self._last_time_ms
        if last is not None:
            if fix.time_ms == last:
                self._count("repeated_epoch")
                return
            if fix.time_ms < last:
                self._count("time_backwards")
            elif fix.time_ms - last > JUMP_MS:
                self._count("time_jump")
        self._last_time_ms = fix.time_ms
        out.append(fix)

    def reset(self) -> None:
        """Forget the epoch in progress (positions are not kept while nobody needs them)."""
        self._epoch = None
        self._resync = None

    def resume(self) -> None:
        """Sentences come again after a gap: the first fix is of the first whole epoch."""
        self._epoch = None
        self._resync = [None]

    def set_reference(self, date: datetime.date, tod_ms: int) -> None:
        """A date learnt elsewhere (the idle scanner), for epochs that carry none."""
        self._ref = (date, tod_ms)

    @property
    def reference(self) -> tuple[datetime.date, int] | None:
        """The last known (date, time of day), for the idle scanner."""
        return self._ref

    def _date_for(self, tod_ms: int) -> datetime.date | None:
        if self._ref is None:
            return None
        date, ref_tod = self._ref
        if tod_ms - ref_tod < -_DAY_MS // 2:
            return date + datetime.timedelta(days=1)
        if tod_ms - ref_tod > _DAY_MS // 2:
            return date - datetime.timedelta(days=1)
        return date

    def _make_fix(self, epoch: _Epoch) -> Fix | None:
        assert epoch.tod_ms is not None
        if epoch.no_fix or epoch.pos is None:
            self._count("no_fix")  # for the summary of an empty result (hal/summary.py)
            return None
        date = epoch.date or self._date_for(epoch.tod_ms)
        if date is None:
            self._count("no_date")
            return None
        three_d = epoch.three_d or epoch.gsa_mode == 3
        return Fix(  # positional: once per second of every trace, keywords cost
            (date.toordinal() - _UNIX_EPOCH_ORDINAL) * _DAY_MS + epoch.tod_ms, epoch.pos[0], epoch.pos[1],
            MODE_3D if three_d else MODE_2D,
            epoch.alt_cm, epoch.vtg_speed_mms if epoch.speed_mms is None else epoch.speed_mms,
            epoch.vtg_course_cdeg if epoch.course_cdeg is None else epoch.course_cdeg, epoch.sats, epoch.hdop_c)
