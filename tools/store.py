"""The backend's store of uplinks: SQLite (embedded, the default) or PostgreSQL (psycopg 3),
behind one small interface, with a versioned schema.

A store is named by `--store`: a file path or ':memory:' for SQLite, a postgresql:// (or
postgres://) URL for PostgreSQL. Each uplink is one row keyed by (unit, boot, seq): an
insert that hits an existing key is a duplicate, so any number of backend workers sharing a
subscription store each uplink exactly once.

The schema version lives in the store (table schema_version). A backend creates a new store
at the current version and refuses an older one until `tcu backend migrate` upgrades it; a
store written by a newer tcu is refused too. Version 0 is the unversioned table of tcu
before the schema was versioned.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from tcu.firmware.errors import UsageError

Row = tuple[str, int, int, str, int, bytes, float]  # unit, boot, seq, type, session, payload, received

# Each step takes the schema from version i to i + 1, per engine. Only ever append.
_UPLINKS_V1 = """CREATE TABLE IF NOT EXISTS uplinks (
    unit TEXT NOT NULL, boot {int} NOT NULL, seq {int} NOT NULL,
    type TEXT NOT NULL, session INTEGER NOT NULL, payload {blob} NOT NULL, received {real} NOT NULL,
    {id}PRIMARY KEY (unit, boot, seq))"""
MIGRATIONS: dict[str, list[list[str]]] = {
    "sqlite": [
        [_UPLINKS_V1.format(int="INTEGER", blob="BLOB", real="REAL", id="")],
        # v2: which backend worker stored the row (shared subscriptions), for audits and load figures
        ["ALTER TABLE uplinks ADD COLUMN worker TEXT NOT NULL DEFAULT ''"],
    ],
    "postgresql": [
        [_UPLINKS_V1.format(int="BIGINT", blob="BYTEA", real="DOUBLE PRECISION", id="id BIGSERIAL NOT NULL, "),
         "CREATE INDEX IF NOT EXISTS uplinks_id ON uplinks (id)"],
        ["ALTER TABLE uplinks ADD COLUMN IF NOT EXISTS worker TEXT NOT NULL DEFAULT ''"],
    ],
}
SCHEMA_VERSION = len(MIGRATIONS["sqlite"])
assert SCHEMA_VERSION == len(MIGRATIONS["postgresql"])


def is_postgres(name: str) -> bool:
    return name.startswith(("postgresql://", "postgres://"))


def describe(name: str) -> str:
    """The store's name for messages, without a password."""
    if not is_postgres(name):
        return name
    from urllib.parse import urlsplit

    parts = urlsplit(name)
    if parts.password:
        netloc = parts.netloc.replace(":%s@" % parts.password, ":***@")
        return parts._replace(netloc=netloc).geturl()
    return name


class Store:
    """One connection to a store. Not thread safe: the backend calls it under its own lock."""

    engine = ""
    placeholder = "?"
    insert_sql = ""
    id_column = "rowid"

    def __init__(self, name: str, conn: Any) -> None:
        self.name = name
        self.conn = conn

    # -- schema
    def version(self) -> int:
        """The store's schema version: 0 for a pre-versioning store, -1 for an empty one."""
        if not self._has_table("schema_version"):
            return 0 if self._has_table("uplinks") else -1
        row = self._query("SELECT MAX(version) FROM schema_version")[0]
        return int(row[0] or 0)

    def migrate(self) -> tuple[int, int]:
        """Upgrade to SCHEMA_VERSION under the store's lock, one step per transaction for an
        existing store; returns (from, to). A new store is created at the current version in a
        single transaction, so that a second worker starting beside the first never sees it
        half-made (version 1 of 2) and refuses it as an old store."""
        start = self.version()
        if start > SCHEMA_VERSION:
            raise UsageError("--store %s: schema version %d is newer than this tcu's %d: upgrade tcu"
                             % (describe(self.name), start, SCHEMA_VERSION))
        while True:
            with self._transaction():
                version = self.version()  # again, under the lock
                if version >= SCHEMA_VERSION:
                    break
                fresh = version == -1
                while version < SCHEMA_VERSION:
                    version = self._step(version)
                    if not fresh:
                        break
        return start, SCHEMA_VERSION

    def _step(self, version: int) -> int:
        """One migration step inside the caller's transaction; the version it leaves."""
        if version <= 0:
            self._execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if version == -1:  # a new store; 0 is the unversioned table, which is version 1's
                for sql in MIGRATIONS[self.engine][0]:
                    self._execute(sql)
            self._execute("INSERT INTO schema_version VALUES (1)")
            return 1
        for sql in MIGRATIONS[self.engine][version]:
            self._execute(sql)
        self._execute("INSERT INTO schema_version VALUES (%d)" % (version + 1))
        return version + 1

    def ready_for_writing(self) -> None:
        """A new store is created at the current version; an old or newer one is refused."""
        version = self.version()
        if version == -1:
            self.migrate()
        elif version != SCHEMA_VERSION:
            hint = ("run `tcu backend migrate --store %s` first" % describe(self.name)
                    if version < SCHEMA_VERSION else "it was written by a newer tcu: upgrade tcu")
            raise UsageError("--store %s: schema version %d, this backend writes version %d: %s"
                             % (describe(self.name), version, SCHEMA_VERSION, hint))

    def check_readable(self) -> None:
        """A store the read tools understand (any version with the uplinks table)."""
        if self.version() == -1:
            raise UsageError("--store %s: not a tcu backend store (no uplinks table)" % describe(self.name))
        if self.version() > SCHEMA_VERSION:
            raise UsageError("--store %s: schema version %d is newer than this tcu's %d: upgrade tcu"
                             % (describe(self.name), self.version(), SCHEMA_VERSION))

    # -- rows
    def insert(self, unit: str, boot: int, seq: int, kind: str, session: int, payload: bytes,
               received: float, worker: str = "") -> bool:
        """Store one uplink, committed before returning; False: its key was already stored."""
        return self._insert((unit, boot, seq, kind, session, payload, received, worker))

    def insert_many(self, rows: Sequence[Sequence[object]]) -> list[bool]:
        """Store uplinks (insert()'s arguments each) in one transaction; which were new."""
        with self._transaction(lock=False):
            return [self._insert(values) for values in rows]

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM uplinks")[0][0])

    def keys(self) -> list[tuple[str, int, int]]:
        return [(str(u), int(b), int(s)) for u, b, s in
                self._query("SELECT unit, boot, seq FROM uplinks ORDER BY %s" % self.id_column)]

    def uplinks(self) -> Iterator[tuple[str, int, bytes]]:
        """(unit, boot, payload) of every row, by unit, boot, seq."""
        for unit, boot, payload in self._query("SELECT unit, boot, payload FROM uplinks ORDER BY unit, boot, seq"):
            yield str(unit), int(boot), bytes(payload)

    def since(self, after: int) -> list[tuple[int, str, int, bytes]]:
        """(id, unit, boot, payload) of rows stored after id `after`, in storage order: `watch`."""
        rows = self._query("SELECT %s, unit, boot, payload FROM uplinks WHERE %s > %s ORDER BY %s" % (
            self.id_column, self.id_column, self.placeholder, self.id_column), (after,))
        return [(int(i), str(u), int(b), bytes(p)) for i, u, b, p in rows]

    def by_worker(self) -> dict[str, int]:
        return {str(w): int(n) for w, n in self._query("SELECT worker, COUNT(*) FROM uplinks GROUP BY worker")}

    def close(self) -> None:
        self.conn.close()

    # -- engine specifics
    def _has_table(self, name: str) -> bool:
        raise NotImplementedError

    def _insert(self, values: Sequence[object]) -> bool:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return list(self.conn.execute(sql, params).fetchall())

    def _execute(self, sql: str) -> None:
        self.conn.execute(sql)

    @contextlib.contextmanager
    def _transaction(self, lock: bool = True) -> Iterator[None]:
        raise NotImplementedError
        yield


class SqliteStore(Store):
    engine = "sqlite"
    insert_sql = "INSERT OR IGNORE INTO uplinks (unit, boot, seq, type, session, payload, received, worker) " \
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

    def _has_table(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def _insert(self, values: Sequence[object]) -> bool:
        return bool(self.conn.execute(self.insert_sql, values).rowcount)

    @contextlib.contextmanager
    def _transaction(self, lock: bool = True) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")


class PostgresStore(Store):
    engine = "postgresql"
    placeholder = "%s"
    id_column = "id"
    insert_sql = "INSERT INTO uplinks (unit, boot, seq, type, session, payload, received, worker) " \
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"

    def _has_table(self, name: str) -> bool:
        return bool(self._query("SELECT to_regclass(%s)", (name,))[0][0])

    def _insert(self, values: Sequence[object]) -> bool:
        return bool(self.conn.execute(self.insert_sql, values).rowcount)

    def insert_many(self, rows: Sequence[Sequence[object]]) -> list[bool]:
        """One statement for the whole batch (one round trip, one commit): the rows go in as
        arrays; RETURNING names the keys that were new. A key twice in one batch is new once."""
        columns = list(zip(*rows, strict=True)) if rows else [()] * 8
        returned = self.conn.execute(
            "INSERT INTO uplinks (unit, boot, seq, type, session, payload, received, worker) "
            "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::integer[], %s::bytea[], "
            "%s::double precision[], %s::text[]) ON CONFLICT DO NOTHING RETURNING unit, boot, seq",
            [list(column) for column in columns]).fetchall()
        new = {(str(u), int(b), int(q)) for u, b, q in returned}
        out = []
        for row in rows:
            key = (str(row[0]), int(row[1]), int(row[2]))  # type: ignore[call-overload]
            out.append(key in new)
            new.discard(key)
        return out

    @contextlib.contextmanager
    def _transaction(self, lock: bool = True) -> Iterator[None]:
        with self.conn.transaction():
            if lock:
                self.conn.execute("SELECT pg_advisory_xact_lock(17017)")  # serialises migrations
            yield


@contextlib.contextmanager
def store_errors(name: str) -> Iterator[None]:
    """Engine errors as a UsageError naming the store (a damaged page may only show when read)."""
    try:
        yield
    except sqlite3.Error as err:
        raise UsageError("--store %s: not a tcu backend store (%s)" % (name, err)) from None
    except Exception as err:
        if type(err).__module__.startswith("psycopg"):
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError("--store %s: %s" % (describe(name), first)) from None
        raise


def open_store(name: str, write: bool = False) -> Store:
    """The store `name` (see the module doc). write: ready for a backend to write (created
    if new); else read only, and it must exist."""
    if is_postgres(name):
        return _open_postgres(name, write)
    if not write and name != ":memory:" and not os.path.isfile(name):
        raise UsageError("--store %s: no such file (the store `tcu backend --store FILE` writes)" % name)
    with store_errors(name):
        if write:
            conn = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        else:
            conn = sqlite3.connect("file:%s?mode=ro" % name, uri=True, check_same_thread=False,
                                   isolation_level=None)
        store = SqliteStore(name, conn)
        try:
            store.ready_for_writing() if write else store.check_readable()
        except BaseException:
            conn.close()
            raise
    return store


def open_for_migration(name: str) -> Store:
    if is_postgres(name):
        return _open_postgres(name, write=False, check=False)
    with store_errors(name):
        return SqliteStore(name, sqlite3.connect(name, isolation_level=None))


def _open_postgres(name: str, write: bool, check: bool = True) -> Store:
    try:
        import psycopg
    except ImportError:
        raise UsageError("--store %s: PostgreSQL needs psycopg 3 (pip install 'tcu-emulator[postgresql]')"
                         % describe(name)) from None
    with store_errors(name):
        conn = psycopg.connect(name, autocommit=True, connect_timeout=10)
        store = PostgresStore(name, conn)
        try:
            if check:
                store.ready_for_writing() if write else store.check_readable()
        except BaseException:
            conn.close()
            raise
    return store
