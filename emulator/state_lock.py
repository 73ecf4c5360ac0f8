"""One unit per state directory: an flock on STATE/lock, held for the unit's lifetime.

Two `tcu run` on one directory used to both start: the second rewrote outbox.boot under the
first, shared its outbox, audit log and command counter, and split the GPS stream with it.
The kernel drops an flock when its holder dies (even by SIGKILL), so a stale lock file never
blocks a restart; the PID written into it is only there to name the holder.
"""

from __future__ import annotations

import fcntl
import os

from tcu.firmware.errors import UsageError

LOCK_NAME = "lock"


class StateLock:
    """Held from construction until release(); raises UsageError naming the holder's PID."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LOCK_NAME)
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
        except OSError as err:
            raise UsageError("cannot create the unit's state directory %s: %s" % (state_dir, err.strerror)) from None
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise UsageError("cannot create the lock file %s: %s" % (self.path, err.strerror)) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self._fd)
            self._fd = None
            raise UsageError("state directory %s is in use by another unit (PID %s); stop it or give another --state"
                             % (state_dir, holder)) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, b"%d\n" % os.getpid())

    def _holder(self) -> str:
        assert self._fd is not None
        text = os.pread(self._fd, 32, 0).decode("ascii", "replace").strip()
        return text if text.isdigit() else "unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
