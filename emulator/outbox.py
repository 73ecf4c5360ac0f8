"""The unit's durable outbox: every uplink is journalled here before it is published, and
forgotten once the broker acknowledged it.

Storage is an append-only journal of frames, each `length u32 | crc32 u32 | body`, the CRC
covering the length and the body. Bodies:

  PUT    kind 1, boot u32, seq u32, priority u8, flags u8, payload
  DONE   kind 2, then (boot u32, seq u32) per record delivered
  EVICT  kind 3, then (boot u32, seq u32) per record evicted

Opening replays the journal; the first frame that is short, too long or fails its CRC marks
a torn or corrupt tail, which is cut (truncated away) and reported in `recovery`: records
before the damage survive, records after it are lost, opening never fails because of it.

Writes are grouped: `put()` stages a record, `commit()` writes everything staged with one
fdatasync and returns the records that became durable (only those may be published).
Delivered records are dropped from memory at once; their bytes leave the file at the next
`purge()` (the journal is truncated when nothing is pending, rewritten otherwise), so a
delivered position does not stay on the unit (privacy).

Bounded: beyond `max_records` the oldest record of the lowest priority (2 before 1) is
evicted, counted in `stats`; priority 0 (crash, SOS) is never evicted: the outbox grows
past its limit for it and counts that instead.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from tcu.firmware.errors import TcuError

Key = tuple[int, int]  # (boot, seq): with the unit id, what the backend deduplicates on

PUT, DONE, EVICT = 1, 2, 3
F_LOCATED = 1
NEVER_EVICT = 0  # priority of crash and SOS reports
MAX_FRAME = 1 << 20
_FRAME = struct.Struct("<II")
_PUT = struct.Struct("<BIIBB")
_KEY = struct.Struct("<II")
_KEY_BATCH = 4096  # keys per DONE / EVICT frame


class OutboxError(TcuError):
    """The outbox file cannot be opened, written or synced."""


@dataclass(slots=True)
class Record:
    boot: int
    seq: int
    priority: int
    located: bool
    payload: bytes
    durable: bool = False  # written and synced

    @property
    def key(self) -> Key:
        return (self.boot, self.seq)


@dataclass
class Recovery:
    """What opening found: frames replayed, and a cut tail if any."""

    frames: int = 0
    pending: int = 0
    cut_at: int | None = None  # file offset where the damage starts
    cut_bytes: int = 0
    reason: str = ""

    def describe(self) -> str:
        if self.cut_at is None:
            return "outbox: %d pending" % self.pending
        return "outbox: cut a damaged tail of %d bytes at offset %d (%s); %d pending" % (
            self.cut_bytes, self.cut_at, self.reason, self.pending)


@dataclass
class OutboxStats:
    put: int = 0
    delivered: int = 0
    evicted: dict[int, int] = field(default_factory=dict)  # priority -> records evicted
    over_limit: int = 0  # priority-0 records accepted beyond max_records
    purges: int = 0

    @property
    def evicted_total(self) -> int:
        return sum(self.evicted.values())


def encode_frame(body: bytes) -> bytes:
    head = struct.pack("<I", len(body))
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


def _put_body(rec: Record) -> bytes:
    return _PUT.pack(PUT, rec.boot, rec.seq, rec.priority, F_LOCATED if rec.located else 0) + rec.payload


def _keys_bodies(kind: int, keys: list[Key]) -> Iterable[bytes]:
    for i in range(0, len(keys), _KEY_BATCH):
        yield bytes([kind]) + b"".join(_KEY.pack(*k) for k in keys[i:i + _KEY_BATCH])


def scan(data: bytes) -> tuple[list[tuple[int, bytes]], int, str]:
    """Split journal bytes into (end offset, body) frames; returns (frames, good length, why
    the rest is bad or '')."""
    frames: list[tuple[int, bytes]] = []
    pos, size = 0, len(data)
    while pos < size:
        if size - pos < _FRAME.size:
            return frames, pos, "torn frame header"
        length, crc = _FRAME.unpack_from(data, pos)
        if not 1 <= length <= MAX_FRAME:
            return frames, pos, "bad frame length %d" % length
        end = pos + _FRAME.size + length
        if end > size:
            return frames, pos, "torn frame"
        body = data[pos + _FRAME.size:end]
        if zlib.crc32(body, zlib.crc32(data[pos:pos + 4])) != crc:
            return frames, pos, "checksum mismatch"
        if not _valid_body(body):
            return frames, pos, "malformed frame"
        frames.append((end, body))
        pos = end
    return frames, pos, ""


def _valid_body(body: bytes) -> bool:
    kind = body[0]
    if kind == PUT:
        return len(body) >= _PUT.size
    return kind in (DONE, EVICT) and len(body) > 1 and (len(body) - 1) % _KEY.size == 0


class Outbox:
    """One unit's outbox in the journal file at `path`. Not thread-safe: callers lock."""

    def __init__(self, path: str | os.PathLike[str], max_records: int = 10_000,
                 purge_interval_s: float = 0.5) -> None:
        self.path = os.fspath(path)
        self.max_records = max_records
        self.purge_interval_s = purge_interval_s
        self.stats = OutboxStats()
        self._live: dict[Key, Record] = {}  # insertion order = publish order
        self._by_priority: dict[int, dict[Key, None]] = {}
        self._staged_puts: list[Record] = []  # put, not yet written
        self._marks: list[bytes] = []  # DONE and EVICT frames not yet written
        self._dead_bytes = 0  # delivered or evicted, still in the file
        self._dead_located = False
        self._last_purge = time.monotonic()
        self._fd = -1
        self.recovery = self._open()

    # -- opening ---------------------------------------------------------------------------
    def _open(self) -> Recovery:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError as err:
            raise OutboxError("cannot open outbox %s: %s" % (self.path, err.strerror or err)) from None
        frames, good, why = scan(data)
        recovery = Recovery(frames=len(frames))
        for _, body in frames:
            self._apply(body)
        if good < len(data):
            recovery.cut_at, recovery.cut_bytes, recovery.reason = good, len(data) - good, why
            self._sync_call(os.ftruncate, self._fd, good)
            self._sync_call(os.fsync, self._fd)
        self._dead_bytes = good - self._live_bytes()
        self._dead_located = self._dead_bytes > 0
        recovery.pending = len(self._live)
        return recovery

    def _apply(self, body: bytes) -> None:
        kind = body[0]
        if kind == PUT:
            _, boot, seq, priority, flags = _PUT.unpack_from(body)
            self._add(Record(boot, seq, priority, bool(flags & F_LOCATED), bytes(body[_PUT.size:]), True))
        else:
            for off in range(1, len(body), _KEY.size):
                self._remove(_KEY.unpack_from(body, off))

    def _add(self, rec: Record) -> None:
        self._live[rec.key] = rec
        self._by_priority.setdefault(rec.priority, {})[rec.key] = None

    def _remove(self, key: Key) -> Record | None:
        rec = self._live.pop(key, None)
        if rec is not None:
            del self._by_priority[rec.priority][key]
        return rec

    # -- the API ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._live)

    def pending(self) -> list[Record]:
        """Every record not yet delivered, committed or staged, oldest first."""
        return list(self._live.values())

    def get(self, key: Key) -> Record | None:
        return self._live.get(key)

    def max_boot(self) -> int:
        return max((k[0] for k in self._live), default=0)

    def put(self, boot: int, seq: int, priority: int, located: bool, payload: bytes) -> bool:
        """Stage an uplink (durable at the next commit). False if it was itself evicted at
        once (the outbox is full of more important records)."""
        rec = Record(boot, seq, priority, located, payload)
        self.stats.put += 1
        if len(self._live) >= self.max_records and not self._make_room(priority):
            self._count_eviction(priority)
            return False
        self._add(rec)
        self._staged_puts.append(rec)
        return True

    def _make_room(self, priority: int) -> bool:
        worst = max((p for p, keys in self._by_priority.items() if keys and p != NEVER_EVICT), default=None)
        if worst is None or worst < priority:
            if priority == NEVER_EVICT:
                self.stats.over_limit += 1  # crash and SOS reports are never dropped
                return True
            return False
        key = next(iter(self._by_priority[worst]))
        rec = self._remove(key)
        assert rec is not None
        self._count_eviction(worst)
        self._forget([rec], EVICT)
        return True

    def _count_eviction(self, priority: int) -> None:
        self.stats.evicted[priority] = self.stats.evicted.get(priority, 0) + 1

    def commit(self) -> list[Record]:
        """Write everything staged with one fdatasync; returns the records that became
        durable, in order (still live ones only)."""
        puts = [r for r in self._staged_puts if self._live.get(r.key) is r]
        self._staged_puts = []
        if not puts and not self._marks:
            return []
        data = b"".join(self._marks) + b"".join(encode_frame(_put_body(r)) for r in puts)
        self._marks = []
        self._sync_call(_write_all, self._fd, data)
        if puts:  # marks alone need no sync: losing one only means sending a record again
            self._sync_call(os.fdatasync, self._fd)
        for r in puts:
            r.durable = True
        return puts

    def delivered(self, keys: Iterable[Key]) -> int:
        """The broker acknowledged these: forget them. Written (without a sync: losing this
        only means sending again) at the next commit. Returns how many were live."""
        done = [rec for rec in (self._remove(k) for k in keys) if rec is not None]
        self.stats.delivered += len(done)
        self._forget(done, DONE)
        return len(done)

    def _forget(self, recs: list[Record], kind: int) -> None:
        written = [r for r in recs if r.durable]  # a staged record just is not written
        if not written:
            return
        self._marks.extend(encode_frame(b) for b in _keys_bodies(kind, [r.key for r in written]))
        self._dead_bytes += sum(_size(r) for r in written)
        self._dead_located = self._dead_located or any(r.located for r in written)

    def purge_due(self, now: float | None = None) -> bool:
        """True when delivered data should leave the file now: nothing is pending, or a
        delivered position has waited purge_interval_s, or dead bytes dwarf live ones."""
        if self._dead_bytes <= 0:
            return False
        if not self._live:
            return True
        now = time.monotonic() if now is None else now
        if self._dead_located and now - self._last_purge >= self.purge_interval_s:
            return True
        return self._dead_bytes > 1 << 20 and self._dead_bytes > 4 * self._live_bytes()

    def _live_bytes(self) -> int:
        return sum(_size(r) for r in self._live.values() if r.durable)

    def purge(self) -> None:
        """Remove delivered and evicted records' bytes from the file: truncate it when
        nothing is pending, else rewrite it with the pending records (atomic rename)."""
        self._last_purge = time.monotonic()
        if self._dead_bytes <= 0:
            return
        self.stats.purges += 1
        self._marks = []  # they refer to records the file will no longer hold
        if not self._live:
            self._sync_call(os.ftruncate, self._fd, 0)
            self._sync_call(os.fsync, self._fd)
            self._staged_puts = []
        else:
            body = b"".join(encode_frame(_put_body(r)) for r in self._live.values() if r.durable)
            tmp = self.path + ".tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    _write_all(fd, body)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
                _fsync_dir(self.path)
                os.close(self._fd)
                self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            except OSError as err:
                raise OutboxError("cannot rewrite outbox %s: %s" % (self.path, err.strerror or err)) from None
        self._dead_bytes = 0
        self._dead_located = False

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.commit()
                if self.purge_due():
                    self.purge()
            finally:
                os.close(self._fd)
                self._fd = -1

    def _sync_call(self, fn: object, *args: object) -> None:
        try:
            fn(*args)  # type: ignore[operator]
        except OSError as err:
            raise OutboxError("outbox %s: %s" % (self.path, err.strerror or err)) from None


def _size(rec: Record) -> int:
    return _FRAME.size + _PUT.size + len(rec.payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def next_boot(outbox_path: str | os.PathLike[str], floor: int = 0) -> int:
    """The boot number for this start, kept in OUTBOX.boot and bumped atomically: strictly
    greater than the last one and than `floor` (records still pending). A fresh outbox starts
    from the clock (Unix seconds), so a unit that lost its outbox does not reuse a boot."""
    path = os.fspath(outbox_path) + ".boot"
    try:
        with open(path, encoding="ascii") as fh:
            last = int(fh.read().strip() or 0)
    except (OSError, ValueError):  # missing or unreadable: start from the clock
        last = 0
    boot = max(last + 1, floor + 1, int(time.time()) if last == 0 else 0)
    if boot >= 1 << 32:
        raise OutboxError("boot counter in %s overflowed" % path)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write("%d\n" % boot)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path)
    except OSError as err:
        raise OutboxError("cannot write the boot counter %s: %s" % (path, err.strerror or err)) from None
    return boot
