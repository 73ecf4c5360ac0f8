"""The backend's store on both engines: a real SQLite file and a real PostgreSQL (Debian's,
started by tests/postgres.py). The schema is versioned and migrated; a replay stored by two
backends at once, one per engine, reads back identically through sessions, export and watch."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO_TRACE, Mosquitto
from postgres import Postgres, postgres  # noqa: F401 - the fixture

from tcu.firmware.errors import UsageError
from tcu.tools.backend import Backend
from tcu.tools.store import SCHEMA_VERSION, open_for_migration, open_store

TCU = [sys.executable, "-m", "tcu.tools.cli"]
OLD_SCHEMA = """CREATE TABLE uplinks (
    unit TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, session INTEGER NOT NULL, payload BLOB NOT NULL, received REAL NOT NULL,
    PRIMARY KEY (unit, boot, seq))"""


def tcu(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TCU, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_name(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    server: Postgres = request.getfixturevalue("postgres")
    return server.new_database("t%d" % time.monotonic_ns())


def test_a_new_store_is_created_at_the_current_version_and_keeps_one_row_per_key(store_name: str) -> None:
    store = open_store(store_name, write=True)
    try:
        assert store.version() == SCHEMA_VERSION == 2
        assert store.insert("car-1", 7, 1, "status", 0, b"\x01", 1.0, "w1")
        assert store.insert("car-1", 7, 2, "report", 1, b"\x02", 2.0, "w2")
        assert not store.insert("car-1", 7, 1, "status", 0, b"\xff", 3.0, "w2")  # a duplicate: the first stays
        assert store.insert("car-1", 8, 1, "status", 0, b"\x03", 4.0, "w1")  # another boot: another key
        assert store.count() == 3
        assert store.keys() == [("car-1", 7, 1), ("car-1", 7, 2), ("car-1", 8, 1)]
        assert list(store.uplinks())[0] == ("car-1", 7, b"\x01")
        first, *rest = store.since(0)
        assert [r[1:] for r in rest] == [("car-1", 7, b"\x02"), ("car-1", 8, b"\x03")]
        assert [r[0] for r in store.since(first[0])] == [r[0] for r in rest]
        assert store.by_worker() == {"w1": 2, "w2": 1}
        batch = [("car-2", 1, 1, "status", 0, b"a", 5.0, "w1"), ("car-1", 7, 2, "report", 1, b"b", 5.0, "w1"),
                 ("car-2", 1, 1, "status", 0, b"c", 5.0, "w1"), ("car-2", 1, 2, "status", 0, b"d", 5.0, "w1")]
        assert store.insert_many(batch) == [True, False, False, True]  # a key twice in one batch is new once
        assert store.count() == 5 and store.insert_many([]) == []
    finally:
        store.close()
    again = open_store(store_name, write=True)  # reopening a current store changes nothing
    assert again.count() == 5 and again.version() == SCHEMA_VERSION
    again.close()


def test_an_unversioned_store_is_refused_until_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the table tcu wrote before the schema had versions
        db.execute(OLD_SCHEMA)
        db.execute("INSERT INTO uplinks VALUES ('car-1', 1, 1, 'status', 0, x'01', 1.0)")
    db.close()
    result = tcu("backend", "--broker", "mqtt://127.0.0.1:1", "--store", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tcu backend: error: --store %s: schema version 0, this backend writes version %d: "
        "run `tcu backend migrate --store %s` first" % (path, SCHEMA_VERSION, path)]
    result = tcu("backend", "migrate", "--store", str(path))
    assert result.returncode == 0 and result.stdout == "%s: schema version 0 -> %d\n" % (path, SCHEMA_VERSION)
    assert tcu("backend", "migrate", "--store", str(path)).stdout.endswith("version 2, up to date\n")
    store = open_store(str(path), write=True)
    assert store.keys() == [("car-1", 1, 1)] and store.by_worker() == {"": 1}
    store.close()


def test_a_store_from_a_newer_tcu_is_refused(store_name: str) -> None:
    store = open_for_migration(store_name)
    store.migrate()
    store._execute("INSERT INTO schema_version VALUES (99)")
    store.close()
    with pytest.raises(UsageError, match="schema version 99 is newer than this tcu's 2: upgrade tcu"):
        open_store(store_name)
    result = tcu("backend", "--broker", "mqtt://127.0.0.1:1", "--store", store_name)
    assert result.returncode == 2 and "written by a newer tcu" in result.stderr


def test_postgres_errors_are_one_line(postgres: Postgres) -> None:  # noqa: F811
    bad = postgres.url.rsplit("/", 1)[0] + "/nosuchdb"
    result = tcu("backend", "sessions", "--store", bad)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert 'database "nosuchdb" does not exist' in result.stderr
    result = tcu("backend", "--broker", "mqtt://127.0.0.1:1", "--store", "postgresql://tcu:secret@127.0.0.1:1/x")
    assert result.returncode == 2 and "secret" not in result.stderr and "***" in result.stderr


@pytest.fixture(scope="module")
def both_stores(mosquitto: Mosquitto, postgres: Postgres,  # noqa: F811
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, int]]:
    """One replay stored by two backends at once: SQLite and PostgreSQL."""
    lite = str(tmp_path_factory.mktemp("stores") / "store.db")
    pg = postgres.new_database("tools")
    backends = [Backend(mosquitto.url, client_id="store-%s-%d" % (engine, time.monotonic_ns()), persistent=False,
                        store=name) for engine, name in (("lite", lite), ("pg", pg))]
    try:
        result = tcu("replay", str(DEMO_TRACE), "--trigger", "theft@30+200", "--trigger", "crash@100",
                     "--unit", "car-9", "--broker", mosquitto.url)
        assert result.returncode == 0, result.stderr
        sent = int(result.stderr.split(" uplinks (")[0].rsplit(" ", 1)[1])
        for backend in backends:
            assert backend.wait_for(sent) and backend.stored() == sent
    finally:
        for backend in backends:
            backend.close()
    yield lite, pg, sent


def test_sessions_export_and_watch_read_the_same_from_both_engines(both_stores: tuple[str, str, int]) -> None:
    lite, pg, sent = both_stores
    outputs = []
    for name in (lite, pg):
        sessions = tcu("backend", "sessions", "--store", name, "--json")
        export = tcu("backend", "export", "--store", name, "--session", "car-9/1", "--geojson", "-", "--quiet")
        watch = tcu("backend", "watch", "--store", name, "--count", str(sent))
        for result in (sessions, export, watch):
            assert result.returncode == 0, result.stderr
        outputs.append((sessions.stdout, export.stdout, watch.stdout))
    assert outputs[0] == outputs[1]
    sessions = [json.loads(line) for line in outputs[1][0].splitlines()]
    assert [s["purpose"] for s in sessions] == ["theft_tracking", "crash_notification"]
    assert all(s["reports"] > 0 and s["state"].startswith("ended") for s in sessions)
    assert len(json.loads(outputs[1][1])["features"][0]["geometry"]["coordinates"]) == sessions[0]["reports"]


def test_plot_reads_postgres(both_stores: tuple[str, str, int], tmp_path: Path) -> None:
    png = tmp_path / "pg.png"
    result = tcu("backend", "plot", "--store", both_stores[1], "-o", str(png), "--quiet")
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_workers_starting_together_on_a_new_store_all_start(engine: str, request: pytest.FixtureRequest,
                                                            tmp_path: Path) -> None:
    """Several `tcu backend --share` workers started at once on an empty store (the bench's
    2-worker phase): one creates it, the others wait on its lock and find it whole, never at an
    intermediate version that they would refuse as an old store."""
    server: Postgres | None = request.getfixturevalue("postgres") if engine == "postgresql" else None
    for round_ in range(8):  # eight fresh stores, four workers racing on each
        name = (server.new_database("race%d_%d" % (round_, time.monotonic_ns())) if server
                else str(tmp_path / ("race-%d.db" % round_)))
        barrier = threading.Barrier(4)
        errors: list[Exception] = []

        def start(name: str = name, barrier: threading.Barrier = barrier,
                  errors: list[Exception] = errors) -> None:
            barrier.wait()
            try:
                open_store(name, write=True).close()
            except Exception as err:  # noqa: BLE001 - asserted below
                errors.append(err)  # noqa: B023 - err is this handler's own

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [str(err) for err in errors] == [], name
        store = open_store(name)
        try:
            assert store.version() == SCHEMA_VERSION
        finally:
            store.close()
