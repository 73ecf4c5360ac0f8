"""Trace files: the gpsd regression log format, raw receiver bytes with ``#`` comment lines.

Comment lines are dropped (they are not receiver output) while every other byte is kept as
is, binary frames and broken lines included, because the framer must cope with exactly
those. ``read`` returns up to CHUNK bytes per call; the pacer splits them into lines.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from tcu.firmware.errors import SourceError

from .framing import SNIFF, Unwrapper, sniff
from .source_base import CHUNK, Closing

_COMMENTS = re.compile(rb"(?m)^#[\t\r\x20-\x7e\x80-\xff]*(?:\n|\Z)")  # UTF-8 text too (names)
_OPEN_COMMENT = re.compile(rb"#[\t\r\x20-\x7e\x80-\xff]*")
_HOLD_MAX = 1 << 16


class TraceFile(Closing):
    """A recorded log: yields its bytes minus ``#`` comment lines; b"" at end of file.

    Reads blocks of CHUNK bytes and drops comment lines in bulk (a line is a comment when
    ``#`` is its first byte; lines end at LF), so the cost per line is C code. A foreign
    framing recognised in the first block (UTF-16, Android GNSS Logger, CR line ends:
    ``framing``) is undone first; ``framing`` names it ("nmea": none).
    """

    is_live = False

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")
        except OSError as exc:
            raise SourceError("cannot open trace file %s: %s" % (path, exc.strerror)) from exc
        self._at_line_start = True
        self._held = b""  # the start of a line that may be a comment, ended by the next block
        self._unwrap: Unwrapper | None = None
        self.framing = "nmea"
        self.bytes_read = 0  # of the file, before any unwrapping

    def read(self) -> bytes:
        """Return the next chunk of receiver bytes, b"" at end of file."""
        try:
            while True:
                if self._unwrap is None:
                    self.framing = sniff(self._file.read(SNIFF))
                    self._file.seek(0)
                    self._unwrap = Unwrapper(self.framing)
                block = self._file.read(CHUNK)
                self.bytes_read += len(block)
                if not block:
                    block = self._unwrap.flush()
                    if not block:
                        return self._flush_held()
                elif self.framing != "nmea":
                    block = self._unwrap.feed(block)
                out = self._strip_comments(block)
                if out:
                    return out
        except (OSError, ValueError) as exc:
            raise SourceError("cannot read trace file %s: %s" % (self.path, exc)) from exc

    def _strip_comments(self, block: bytes) -> bytes:
        """``block`` without its comment lines: ``#`` at a line start, then text only up to
        the LF. A "#" after a LF inside a binary frame (UBX time 10 min 35 s is 0A 23) is
        not a comment: the frame goes on with bytes no comment has. A line that may be a
        comment still going on at the end of the block is held back for the next one."""
        block = self._held + block
        self._held = b""
        if b"#" not in block:
            self._at_line_start = block.endswith(b"\n")
            return block
        last = block.rfind(b"\n")
        if (last >= 0 or self._at_line_start) and _OPEN_COMMENT.fullmatch(block, last + 1) \
                and len(block) - last < _HOLD_MAX:
            block, self._held = block[:last + 1], block[last + 1:]
        at_start, self._at_line_start = self._at_line_start, block.endswith(b"\n") or not block
        if at_start:
            return _COMMENTS.sub(b"", block)
        return _COMMENTS.sub(b"", b"x" + block)[1:]  # block[0] continues a line: not a comment

    def _flush_held(self) -> bytes:
        """End of file: a last comment line without LF is dropped, anything else kept."""
        held, self._held = self._held, b""
        return b"" if _OPEN_COMMENT.fullmatch(held) else held

    def close(self) -> None:
        self._file.close()
