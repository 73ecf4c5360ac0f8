"""Cut a raw receiver byte stream into checksum-valid NMEA 0183 sentences.

Why a hand-written framer instead of reading lines: a receiver's serial stream is not text.
Binary UBX/SiRF frames sit on the same "line" as NMEA, a wrong baud rate gives non-ASCII
noise, a cable unplugged mid-sentence leaves a half line, and line ends come as CR, LF or
CRLF. Decoding such a stream as UTF-8 lines would raise or glue garbage to sentences; this
framer works on bytes, never raises, and restarts cleanly at the next ``$``.

Rules (chosen to match gpsd's packet lexer on the recorded logs):

* A sentence starts at ``$`` (or ``!``, the NMEA encapsulation start used by AIS) and ends at
  the first CR or LF. Extra CR/LF bytes between sentences are ignored.
* Only printable ASCII (0x20..0x7E) may appear in between. Any other byte (NUL, non-ASCII,
  other control bytes, i.e. binary frames or line noise) rejects the sentence in progress
  ("non_ascii") and the framer hunts for the next ``$``/``!``.
* A ``$`` inside a sentence means the previous one was cut off (a lost line end or a
  truncated write): the fragment is rejected ("truncated") and a new sentence starts there.
* Sentences longer than ``max_len`` characters (without CR/LF) are rejected ("too_long").
  The NMEA 0183 limit is 82 including CR/LF, but real receivers exceed it: SkyTraq ``$PSTI``
  and survey-grade GGA reach ~100, Quectel ``$PGLOR`` ~135 and MTK ``$PMTKCHN`` 203, all of
  which gpsd accepts. The default (255) bounds memory without dropping real sentences.
* The sentence must end in ``*HH`` (hex, either case, optionally followed by spaces which
  are stripped) and HH must equal the XOR of the bytes between the start byte and ``*``.
  Otherwise it is rejected as "checksum" (wrong value or malformed digits).
* Sentences without any checksum are REJECTED ("no_checksum"). The logs show gpsd drops
  them: in ``mtk-3301.log`` the checksum-less ``$POLYN`` lines and in ``sl869.log`` the
  checksum-less ``$GPTXT`` line are not echoed in the ``.chk`` output while every
  checksummed sentence around them is; ``holux-gm-210.log``'s cut-off ``$GPGGA`` likewise.
  The checksum is the only integrity check NMEA has, so a line without one cannot be told
  apart from a truncated or corrupted one (pynmea2 would happily accept it).

``counts`` records rejected sentences by cause; ``discarded`` counts bytes skipped while
hunting for a start byte (binary frames, noise, stray line ends).
"""

from __future__ import annotations

import re

DEFAULT_MAX_LEN = 255

# Bytes that interrupt a sentence in progress: anything outside printable ASCII, or '$'.
_STOP = re.compile(rb"[^\x20-\x23\x25-\x7e]")
_START = re.compile(rb"[$!]")
_HEX = frozenset(b"0123456789ABCDEFabcdef")


def nmea_checksum(body: bytes) -> int:
    """XOR of all bytes of ``body`` (the part between the start byte and ``*``).

    Folded as one big integer (halves XORed together) rather than byte by byte: fewer
    interpreter steps per sentence. Up to 128 bytes (every real sentence) the folds are
    unrolled: bits above the ones still needed only hold garbage that the final mask drops.
    """
    value = int.from_bytes(body, "little")
    if len(body) <= 128:
        value ^= value >> 512
        value ^= value >> 256
        value ^= value >> 128
        value ^= value >> 64
        value ^= value >> 32
        value ^= value >> 16
        return (value ^ (value >> 8)) & 0xFF
    bits = 1 << (value.bit_length() - 1).bit_length()  # a power of two >= the width
    while bits > 8:
        bits >>= 1
        value = (value >> bits) ^ (value & _MASKS[bits])
    return value


_MASKS = {1 << n: (1 << (1 << n)) - 1 for n in range(3, 24)}


class NmeaFramer:
    """Incremental byte-stream to sentence framer; see the module docstring for the rules.

    ``feed`` may be called with chunks of any size: the result is the same whether a stream
    is fed whole or one byte at a time, because the only state carried between calls is the
    sentence in progress.
    """

    def __init__(self, max_len: int = DEFAULT_MAX_LEN, types: frozenset[str] | None = None) -> None:
        self.max_len = max_len
        self.types = None if types is None else frozenset(t.encode("ascii") for t in types)
        self.counts: dict[str, int] = {}
        self.discarded = 0
        self.skipped = 0  # well-framed talker sentences of a type not in ``types``, unchecked
        self._buf = bytearray()  # current sentence, starting with '$' or '!'; empty = hunting
        # Fast path: a start byte followed by a whole clean sentence and its line end.
        self._clean = re.compile(rb"[$!](?:[\x20-\x23\x25-\x7e]{0,%d}[\r\n])?" % (max_len - 1))

    def _count(self, cause: str) -> None:
        self.counts[cause] = self.counts.get(cause, 0) + 1

    def _reject(self, cause: str) -> None:
        self._count(cause)
        self._buf.clear()

    def feed(self, data: bytes) -> list[str]:
        """Consume ``data`` and return the sentences it completed (str, no CR/LF)."""
        out: list[str] = []
        data = bytes(data)
        pos, end = 0, len(data)
        while pos < end:
            if not self._buf:
                match = self._clean.search(data, pos)
                if match is None:
                    self.discarded += end - pos
                    return out
                start = match.start()
                self.discarded += start - pos
                pos = match.end()
                if pos - start > 1:  # a whole line at once: the common case
                    sentence = self._check(data[start:pos - 1])
                    if sentence is not None:
                        out.append(sentence)
                    continue
                self._buf.append(data[start])
                continue
            stop = _STOP.search(data, pos)
            stop_at = end if stop is None else stop.start()
            room = self.max_len + 1 - len(self._buf)  # one byte over the limit is enough
            if stop_at - pos >= room:
                # Too long even before the terminator: drop it and hunt from what follows.
                self._reject("too_long")
                pos += room
                continue
            self._buf += data[pos:stop_at]
            pos = stop_at
            if stop is None:
                return out
            byte = data[pos]
            if byte in (0x0D, 0x0A):
                pos += 1
                sentence = self._finish()
                if sentence is not None:
                    out.append(sentence)
            elif byte == 0x24:  # '$': the sentence in progress was cut off
                self._reject("truncated")
            else:
                self._reject("non_ascii")
                pos += 1
        return out

    def _finish(self) -> str | None:
        """Validate the buffered line; return it as str, or count why it was rejected."""
        line = bytes(self._buf)
        self._buf.clear()
        return self._check(line)

    def _check(self, line: bytes) -> str | None:
        """Validate one line (start byte to line end, exclusive) as a sentence."""
        line = line.rstrip(b" ")
        if len(line) > self.max_len:
            self._count("too_long")
            return None
        star = line.rfind(b"*")
        if star < 0:
            self._count("no_checksum" if len(line) > 1 else "empty")
            return None
        if self.types is not None and line[6:7] == b"," and line[1:2] != b"P" \
                and line[3:6] not in self.types:
            self.skipped += 1
            return None
        digits = line[star + 1:]
        if len(digits) != 2 or not (digits[0] in _HEX and digits[1] in _HEX):
            self._count("checksum")
            return None
        if int(digits, 16) != nmea_checksum(line[1:star]):
            self._count("checksum")
            return None
        return line.decode("ascii")

    def take_pending(self) -> bytes:
        """The sentence in progress, for the idle scanner taking over; the framer forgets it."""
        pending = bytes(self._buf)
        self._buf.clear()
        return pending

    @property
    def rejected(self) -> int:
        """Total number of rejected sentences, all causes."""
        return sum(self.counts.values())
