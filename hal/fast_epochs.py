"""The full path's decoder and assembler in one loop: checksummed bodies in, fixes out.

``EpochAssembler.push_all`` builds a ``Report`` per sentence and then copies it into the
epoch: about half of the full path's time went to those two steps
(bench/decode_throughput.py). ``FastAssembler.push_chunk`` gives the same fixes and the
same counts for the same bytes (tests/test_hal_fastpath.py checks it on every log and on
generated streams), but each sentence type's fields go from its text, through the shared
conversion caches of ``nmea_fields``, straight into the epoch:

* a per-type parser returns a plain tuple, converting exactly the fields ``decode_body``
  converts (so a malformed field is rejected in the same cases), and raises the same way;
* only then is the epoch touched, so a rejected sentence leaves it as it was;
* the untimed GSA and VTG, 44% of the used sentences of the logs and mostly the same text
  epoch after epoch, are parsed once per distinct text.

``EpochAssembler`` stays the readable statement of the rules (and the path of the
sentence-level API); change both together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tcu.firmware.fix import Fix

from .nmea import EpochAssembler, _Epoch
from .nmea_decode import _BODY_HEADS, GGA_FIX_QUALITIES
from .nmea_fields import (
    _CENTI,
    _COURSES,
    _DATES,
    _HDOPS,
    _KMHS,
    _KNOTS,
    _TOD,
    FAA_FIX_MODES,
    _Cache,
    position,
    zda_date,
)
from .scan import _HEX_VALUE, SentenceScanner

_BAD = (ValueError, TypeError, IndexError, ArithmeticError)


def _rmc(f: list[str]) -> tuple[Any, ...]:
    """(tod, date or None if no fix, position or None, speed, course)."""
    tod = _TOD[f[0]]
    date = _DATES[f[8]]
    if f[1] != "A" or (f[11] and f[11][0] not in FAA_FIX_MODES):
        return tod, None, None, None, None
    pos = position(f[2], f[3], f[4], f[5])
    speed, course = _KNOTS[f[6]], _COURSES[f[7]]
    if pos is None:
        return tod, None, None, None, None
    return tod, date, pos, speed, course


def _gga(f: list[str]) -> tuple[Any, ...]:
    """(tod, position or None, altitude, satellites, HDOP)."""
    tod = _TOD[f[0]]
    if f[5] not in GGA_FIX_QUALITIES:
        return tod, None, None, None, None
    pos = position(f[1], f[2], f[3], f[4])
    alt = _CENTI[f[8]] if f[9] == "" or f[9] == "M" else None
    sats = int(f[6]) if f[6].isdigit() else None
    return tod, pos, alt, sats, _HDOPS[f[7]]


def _gns(f: list[str]) -> tuple[Any, ...]:
    tod = _TOD[f[0]]
    if not any(c in FAA_FIX_MODES for c in f[5]):
        return tod, None, None, None, None
    pos = position(f[1], f[2], f[3], f[4])
    alt = _CENTI[f[8]]
    sats = int(f[6]) if f[6].isdigit() else None
    return tod, pos, alt, sats, _HDOPS[f[7]]


def _gll(f: list[str]) -> tuple[Any, ...]:
    tod = _TOD[f[4]]
    if f[5] != "A" or (f[6] and f[6][0] not in FAA_FIX_MODES):
        return tod, None
    return tod, position(f[0], f[1], f[2], f[3])


def _vtg(f: list[str]) -> tuple[Any, ...]:
    """(speed, course), either None."""
    if f[8] and f[8][0] not in FAA_FIX_MODES:
        return None, None
    course = _COURSES[f[0]]
    speed = _KNOTS[f[4]]
    if speed is None:
        speed = _KMHS[f[6]]
    return speed, course


def _gsa(f: list[str]) -> tuple[Any, ...]:
    """(fix type 1-3 or None, HDOP)."""
    return (int(f[1]) if f[1] in ("1", "2", "3") else None), _HDOPS[f[15]]


def _zda(f: list[str]) -> tuple[Any, ...]:
    tod = _TOD[f[0]]
    if tod is None:
        return None, None
    key = (f[1], f[2], f[3])
    date = _ZDA_DATES.get(key)
    if date is None:
        date = zda_date(f)
        if len(_ZDA_DATES) >= 64:
            _ZDA_DATES.clear()
        _ZDA_DATES[key] = date
    return tod, date


_ZDA_DATES: dict[tuple[str, str, str], Any] = {}  # (day, month, year) -> date: a day's ZDAs


_PARSERS: dict[str, Callable[[list[str]], tuple[Any, ...]]] = {
    "RMC": _rmc, "GGA": _gga, "GNS": _gns, "GLL": _gll, "VTG": _vtg, "GSA": _gsa, "ZDA": _zda,
}


def _fast_head(head: str) -> Any:
    """``_BODY_HEADS`` with this module's parser: (type, parser, width, untimed), None or False."""
    known = _BODY_HEADS[head]
    if not known:
        return known
    return known[0], _PARSERS[known[0]], known[2], known[0] in ("GSA", "VTG")


_HEADS: _Cache[str, Any] = _Cache(_fast_head)


class FastAssembler(EpochAssembler):
    """``EpochAssembler`` with ``push_chunk``: the scanner's candidates straight to fixes."""

    def __init__(self) -> None:
        super().__init__()
        # A GSA or VTG body seen before -> (its check digits, its type, its values).
        self._known: dict[bytes, tuple[bytes, str, tuple[Any, ...]]] = {}

    def push_chunk(self, scanner: SentenceScanner, data: bytes) -> list[Fix]:
        """``push_all(scanner.feed(data))``: the same fixes and counts.

        A GSA or VTG already seen with the same check digits goes straight from the
        scanner's bytes to the epoch: not checksummed, decoded or parsed again.
        """
        out: list[Fix] = []
        known, verified, early, hex_value = self._known, scanner.verified, self.close_early, _HEX_VALUE
        for body, digits, spaces in scanner.candidates(data):
            seen = known.get(body)
            if seen is not None and seen[0] == digits and not spaces:
                if self._resync is None:
                    self._add_untimed(seen[1], seen[2], out)
                continue
            if spaces:
                if not verified(body, digits, spaces):
                    continue
            else:  # framer.nmea_checksum, inline: the call alone costs a tenth of the checksum
                value = int.from_bytes(body, "little")
                if len(body) > 64:
                    value ^= value >> 1024
                    value ^= value >> 512
                value ^= value >> 256
                value ^= value >> 128
                value ^= value >> 64
                value ^= value >> 32
                value ^= value >> 16
                if hex_value[digits] != (value ^ (value >> 8)) & 0xFF:
                    scanner.counts["checksum"] = scanner.counts.get("checksum", 0) + 1
                    continue
            text = body.decode("ascii")
            head = _HEADS[text[:6]]
            if not head:
                if head is False:
                    self._count("bad_sentence")
                continue
            kind, parse, width, is_untimed = head
            data_text = text[6:]
            try:  # no "*" in data_text: the scanner's candidates have none
                fields = data_text.split(",", width)
                if " " in data_text:
                    fields = [s.strip() for s in fields]
                if len(fields) < width:
                    fields += [""] * width
                values = parse(fields)
            except _BAD:
                self._count("bad_sentence")
                continue
            if is_untimed:
                if len(known) >= 64:
                    known.clear()
                known[body] = (digits, kind, values)
                if self._resync is None:
                    self._add_untimed(kind, values, out)
            elif kind == "ZDA":
                if values[1] is not None:
                    self._ref = (values[1], values[0])
            else:
                epoch = self._epoch
                if epoch is None or values[0] != epoch.tod_ms or values[0] is None or self._resync is not None:
                    epoch = self._timed_epoch(kind, values[0], out)  # a new epoch, or a special case
                if epoch is not None:
                    _APPLY[kind](epoch, values)
                    if early:
                        self._after_add(kind, out)
        return out

    def _add_untimed(self, kind: str, values: tuple[Any, ...], out: list[Fix]) -> None:
        """A GSA or VTG belongs to the epoch in progress (or opens an untimed one)."""
        epoch = self._epoch
        if epoch is None:
            epoch = self._open_epoch(None, out)
        first, second = values
        if kind == "GSA":
            if first is not None:
                epoch.gsa_mode = first
            if second is not None:
                epoch.hdop_c = second
        else:
            if first is not None:
                epoch.vtg_speed_mms = first
            if second is not None:
                epoch.vtg_course_cdeg = second
        if self.close_early:
            self._after_add(kind, out)

    def _timed_epoch(self, kind: str, tod: int | None, out: list[Fix]) -> _Epoch | None:
        """The epoch a timed sentence belongs to (completing the one in progress into
        ``out`` when its time differs); None when the sentence is to be skipped."""
        if tod is None and kind == "GLL":
            return None
        if self._resync is not None:
            if tod is None:
                return None
            if self._resync[0] is None:
                self._resync[0] = tod
            if tod == self._resync[0]:
                return None
            self._resync = None
        epoch = self._epoch
        if epoch is None or tod is None or tod != epoch.tod_ms:
            epoch = self._open_epoch(tod, out)
        return epoch


def _apply_rmc(epoch: _Epoch, values: tuple[Any, ...]) -> None:
    _, date, pos, speed, course = values
    if pos is None:
        epoch.no_fix = True
        return
    if date is not None:
        epoch.date = date
    epoch.pos = pos
    if speed is not None:
        epoch.speed_mms = speed
    if course is not None:
        epoch.course_cdeg = course


def _apply_gga(epoch: _Epoch, values: tuple[Any, ...]) -> None:
    _, pos, alt, sats, hdop = values
    if pos is None:
        epoch.no_fix = True
        return
    epoch.pos = pos
    if alt is not None:
        epoch.alt_cm = alt
        epoch.three_d = True
    if sats is not None:
        epoch.sats = sats
    if hdop is not None:
        epoch.hdop_c = hdop


def _apply_gll(epoch: _Epoch, values: tuple[Any, ...]) -> None:
    if values[1] is None:
        epoch.no_fix = True
    else:
        epoch.pos = values[1]


_APPLY: dict[str, Callable[[_Epoch, tuple[Any, ...]], None]] = {
    "RMC": _apply_rmc, "GGA": _apply_gga, "GNS": _apply_gga, "GLL": _apply_gll,
}
