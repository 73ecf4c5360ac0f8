"""Trace files: the gpsd regression log format, raw receiver bytes with ``#`` comment lines.

Comment lines are dropped (they are not receiver output) while every other byte is kept as
is, binary frames and broken lines included, because the framer must cope with exactly
those. ``read`` returns up to CHUNK bytes per call; the pacer splits them into lines.
"""

from __future__ import annotations

import re
from typing import BinaryIO

from tcu.firmware.errors import SourceError

from .source_base import CHUNK, Closing

_COMMENTS = re.compile(rb"(?m)^#[^\n]*(?:\n|\Z)")


class TraceFile(Closing):
    """A recorded log: yields its bytes minus ``#`` comment lines; b"" at end of file.

    Reads blocks of CHUNK bytes and drops comment lines in bulk (a line is a comment when
    ``#`` is its first byte; lines end at LF), so the cost per line is C code.
    """

    is_live = False

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")
        except OSError as exc:
            raise SourceError("cannot open trace file %s: %s" % (path, exc.strerror)) from exc
        self._at_line_start = True
        self._in_comment = False  # a comment line continues in the next block

    def read(self) -> bytes:
        """Return the next chunk of receiver bytes, b"" at end of file."""
        try:
            while True:
                block = self._file.read(CHUNK)
                if not block:
                    return b""
                out = self._strip_comments(block)
                if out:
                    return out
        except (OSError, ValueError) as exc:
            raise SourceError("cannot read trace file %s: %s" % (self.path, exc)) from exc

    def _strip_comments(self, block: bytes) -> bytes:
        if self._in_comment:
            newline = block.find(b"\n")
            if newline < 0:
                return b""
            block = block[newline + 1:]
            self._in_comment = False
            self._at_line_start = True
            if not block:
                return b""
        last = block.rfind(b"\n")
        self._in_comment = block.startswith(b"#", last + 1) and (last >= 0 or self._at_line_start)
        at_start, self._at_line_start = self._at_line_start, block.endswith(b"\n")
        if b"#" not in block:
            return block
        if at_start:
            return _COMMENTS.sub(b"", block)
        return _COMMENTS.sub(b"", b"x" + block)[1:]  # block[0] continues a line: not a comment

    def close(self) -> None:
        self._file.close()
