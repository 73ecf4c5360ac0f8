"""What every byte source offers: ``read() -> bytes``, ``close()``, ``is_live``.

A source raises ``SourceError`` when it cannot be opened or read; a live source's ``read``
returns b"" when nothing arrived within its timeout, a trace's at end of file.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

CHUNK = 4096


class Source(Protocol):
    is_live: bool

    def read(self) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class Closing:
    """Context-manager plumbing shared by the sources."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
