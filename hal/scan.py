"""Bulk framing of the few sentence types a fix needs: the HAL's fast path.

``NmeaFramer`` walks every sentence of the stream in Python to count each reject by cause;
that is the diagnostic view (``tcu doctor``, the framer tests). To assemble fixes only
RMC, GGA, GNS, GLL, VTG, GSA and ZDA matter, about half the lines of a real receiver's
output, so ``SentenceScanner`` finds them with one regular expression over each chunk (the
scan runs in C) and verifies each one's checksum in Python. Everything else (GSV, TXT,
proprietary sentences, binary frames) is skipped without a Python step per line.

The sentences it returns are exactly those of the used types that ``NmeaFramer`` returns
for the same bytes, whatever the chunking (tests/test_hal_scan.py): a sentence is the run
from a ``$`` to the next CR or LF of printable ASCII without another ``$``, at most
``max_len`` bytes, ending in ``*HH`` (spaces allowed after) with the right checksum. A
candidate with a wrong checksum is counted in ``counts["checksum"]``; a run too long to be
a sentence is not even a candidate (the framer counts those).
"""

from __future__ import annotations

import re

from .framer import DEFAULT_MAX_LEN, nmea_checksum

_HEX_VALUE = {b"%02x" % n: n for n in range(256)}
_HEX_VALUE.update({k.upper(): n for k, n in _HEX_VALUE.items()})
_HEX_VALUE.update({k[:1].upper() + k[1:]: n for k, n in list(_HEX_VALUE.items())})
_HEX_VALUE.update({k[:1] + k[1:].upper(): n for k, n in list(_HEX_VALUE.items())})


class SentenceScanner:
    """Feed raw bytes, get the checksum-valid sentences of ``types`` (str, no CR/LF)."""

    def __init__(self, types: frozenset[str], max_len: int = DEFAULT_MAX_LEN) -> None:
        self.max_len = max_len
        alternatives = "|".join(sorted(types)).encode("ascii")
        if {len(kind) for kind in types} != {3}:
            raise ValueError("sentence types have three letters: %r" % sorted(types))
        # Groups: the checksummed part, the hex digits, the spaces after them. ``findall``
        # hands them over as tuples, with no match object per sentence. The body's length
        # is bounded here ("$", "*HH" and the spaces count towards max_len): a longer one
        # does not match at all.
        self._pattern = re.compile(
            rb"\$([\x20-\x23\x25-\x7e]{2}(?:%s),[\x20-\x23\x25-\x29\x2b-\x7e]{0,%d})\*"
            rb"([0-9A-Fa-f]{2})( *)(?=[\r\n])" % (alternatives, max_len - 4 - 6))
        self.counts: dict[str, int] = {}
        self.candidates_seen = 0  # sentences of a used type found, before their checksum
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        """The checksum-valid sentences of the used types that ``data`` completes."""
        verified = self.verified
        return ["$%s*%s" % (body.decode("ascii"), digits.decode("ascii"))
                for body, digits, spaces in self.candidates(data) if verified(body, digits, spaces)]

    def candidates(self, data: bytes) -> list[tuple[bytes, bytes, bytes]]:
        """(body, check digits, spaces after them) of each sentence of a used type that
        ``data`` completes, not verified yet: check each with ``verified``."""
        buf = self._pending + data if self._pending else bytes(data)
        cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
        self._pending = buf[cut:][-self.max_len:]
        found = self._pattern.findall(buf, 0, cut)
        self.candidates_seen += len(found)
        return found

    def verified(self, body: bytes, digits: bytes, spaces: bytes) -> bool:
        """Whether a candidate is whole (not too long) and its checksum right; counts rejects."""
        if spaces and len(body) + len(spaces) > self.max_len - 4:
            self.counts["too_long"] = self.counts.get("too_long", 0) + 1
            return False
        if _HEX_VALUE[digits] != nmea_checksum(body):
            self.counts["checksum"] = self.counts.get("checksum", 0) + 1
            return False
        return True

    def take_pending(self) -> bytes:
        """The unterminated tail; the scanner forgets it."""
        pending, self._pending = self._pending, b""
        return pending

    def give_pending(self, data: bytes) -> None:
        self._pending = bytes(data)
