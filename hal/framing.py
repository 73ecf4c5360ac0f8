"""Foreign framings of NMEA logs, recognised from a file's first bytes and undone on the fly.

Logs from other tools are NMEA in another wrapping; read as they are, they give 0 fixes and
no reason. ``Unwrapper`` turns each into the plain byte stream the framer expects:

* UTF-16 (little or big endian, with or without a byte order mark: Windows tools save text so):
  decoded to ASCII, anything else becomes ``?`` (which no sentence contains);
* Android GNSS Logger (``NMEA,$GPGGA,...*63,1699400577561``): the sentence is kept and the
  phone's timestamp dropped; its ``Fix``, ``Raw``, ``Status``... lines are not receiver NMEA and
  are dropped (a ``Fix`` line is the phone's own fused position);
* old Mac line ends (CR only) in a text log: CR becomes LF, so that ``#`` comment lines end.
  A log with binary frames keeps its bytes as they are (a CR there may be inside a frame).

``kind`` names the framing ("nmea" for none), for the summary of what a source gave.
"""

from __future__ import annotations

import codecs
import re

_ANDROID_LINE = re.compile(rb"(?m)^NMEA,(\$[^\r\n]*?\*[0-9A-Fa-f]{2}),[^\r\n]*$")
_OTHER_LINE = re.compile(rb"(?m)^(?!#|\$|!)[A-Za-z]+,[^\r\n]*(?:\r\n|\r|\n|$)")
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")
SNIFF = 4096  # bytes looked at to recognise a framing
KINDS = ("nmea", "utf-16-le", "utf-16-be", "android", "cr")


def sniff(head: bytes) -> str:
    """The framing of a log that starts with ``head`` (one of ``KINDS``)."""
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le"
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be"
    sample = head[:512]
    if len(sample) >= 8:
        odd_nuls, even_nuls = sample[1::2].count(0), sample[0::2].count(0)
        if odd_nuls > len(sample) * 0.4 and even_nuls == 0:
            return "utf-16-le"
        if even_nuls > len(sample) * 0.4 and odd_nuls == 0:
            return "utf-16-be"
    if re.search(rb"(?m)^NMEA,\$", head):
        return "android"
    if b"\r" in head and b"\n" not in head and not _BINARY.search(head):
        return "cr"
    return "nmea"


class Unwrapper:
    """Feed a log's bytes in order; get the plain NMEA stream back. Keeps at most one
    partial line (and a partial UTF-16 code unit) between calls."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError("unknown framing %r" % kind)
        self.kind = kind
        self._decoder = codecs.getincrementaldecoder(kind)("replace") if kind.startswith("utf-16") else None
        self._tail = b""

    def feed(self, data: bytes) -> bytes:
        if self._decoder is not None:
            text = self._decoder.decode(data)
            if text.startswith("\ufeff"):
                text = text[1:]
            return text.encode("ascii", "replace")
        if self.kind == "cr":
            return data.replace(b"\r", b"\n")
        if self.kind == "android":
            buf = self._tail + data
            cut = max(buf.rfind(b"\n"), buf.rfind(b"\r")) + 1
            self._tail = buf[cut:][-4096:]
            return self._android(buf[:cut])
        return data

    def flush(self) -> bytes:
        """The last, unterminated line (end of file)."""
        tail, self._tail = self._tail, b""
        if self.kind == "android" and tail:
            return self._android(tail + b"\n")
        return b""

    @staticmethod
    def _android(lines: bytes) -> bytes:
        return _OTHER_LINE.sub(b"", _ANDROID_LINE.sub(rb"\1", lines))
