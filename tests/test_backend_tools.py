"""The backend's data tools on a real store: a replay with overlapping triggers goes through
Mosquitto into the backend's SQLite store, then `tcu backend sessions|export|plot|watch`
read it. Expected values come from the store's raw rows decoded with cbor2 (not our decoder);
exports are parsed back with gpxpy and geojson; terminals are real ptys."""

from __future__ import annotations

import fcntl
import json
import os
import select
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import geojson
import gpxpy
import pytest
from conftest import DEMO_TRACE, Mosquitto
from helpers import TCU, tcu
from rich.filesize import decimal

from tcu.tools.backend import Backend

TRIGGERS = ["--trigger", "theft@30+200", "--trigger", "crash@100", "--trigger", "roadside@350"]
GPXTPX = "{http://www.garmin.com/xmlschemas/TrackPointExtension/v2}"
ANSI = "\x1b["


def on_pty(*args: str, stdout_too: bool = False, stdout_file: Path | None = None, timeout: float = 60) -> str:
    """Run tcu with stderr (and stdout if stdout_too) on a real pseudo-terminal; returns what
    the terminal received."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    env = dict(os.environ, TERM="xterm-256color")
    for name in ("NO_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    out = open(stdout_file, "wb") if stdout_file else None  # noqa: SIM115 - closed below
    stdout: Any = slave if stdout_too else (out or subprocess.DEVNULL)
    proc = subprocess.Popen([*TCU, *args], stdin=subprocess.DEVNULL, stdout=stdout, stderr=slave, env=env)
    os.close(slave)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            received += data
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, received.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        if out:
            out.close()
    return received.decode("utf-8", "replace")


class Store:
    """The store of one replay, and what it holds, decoded independently with cbor2."""

    def __init__(self, path: Path) -> None:
        self.path = path
        db = sqlite3.connect(path)
        rows = db.execute("SELECT unit, boot, payload FROM uplinks ORDER BY seq").fetchall()
        db.close()
        assert len({(unit, boot) for unit, boot, _ in rows}) == 1
        self.unit, self.boot = rows[0][0], rows[0][1]
        self.starts: dict[int, int] = {}
        self.ends: dict[int, int] = {}
        self.purposes: dict[int, int] = {}
        self.tracks: dict[int, list[tuple[int, int, int, int | None, int | None, int | None]]] = {}
        for _, _, payload in rows:
            items = cbor2.loads(payload)
            kind, sid = items[0] % 8, items[2]
            if kind == 1:
                self.starts[sid], self.purposes[sid] = items[4], items[3]
            elif kind == 4:
                self.ends[sid] = items[3]
            elif kind == 2:
                ext = items[-1] if isinstance(items[-1], dict) else {}
                alt = items[9] if len(items) > 9 and isinstance(items[9], int) else None  # then quality, map
                fix = (self.starts[sid] + items[4], items[5], items[6], items[7] if len(items) > 7 else None,
                       items[8] if len(items) > 8 else None, alt)
                for served in [sid, *ext.get(5, [])]:
                    self.tracks.setdefault(served, []).append(fix)
        for track in self.tracks.values():
            track.sort()

    def name(self, sid: int) -> str:
        return "%s/%d/%d" % (self.unit, self.boot, sid)


@pytest.fixture(scope="module")
def store(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("backend-tools") / "store.db"
    backend = Backend(mosquitto.url, client_id="tools-%d" % time.monotonic_ns(), persistent=False, store=str(path))
    try:
        result = tcu("replay", str(DEMO_TRACE), *TRIGGERS, "--unit", "car-1", "--broker", mosquitto.url)
        assert result.returncode == 0, result.stderr
        sent = int(result.stderr.split(" uplinks (")[0].rsplit(" ", 1)[1])
        assert backend.wait_for(sent) and backend.stored() == sent
    finally:
        backend.close()
    yield Store(path)


def iso(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_sessions_lists_every_session_with_its_reports(store: Store) -> None:
    result = tcu("backend", "sessions", "--store", str(store.path), "--json")
    assert result.returncode == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(s["session"], s["purpose"], s["trigger"]) for s in listed] == [
        (1, "theft_tracking", "theft"), (2, "crash_notification", "crash"), (3, "roadside_assistance", "roadside")]
    for s in listed:
        assert (s["unit"], s["boot"]) == (store.unit, store.boot)
        assert s["start"] == iso(store.starts[s["session"]]) and s["end"] == iso(store.ends[s["session"]])
        assert s["reports"] == len(store.tracks[s["session"]]) and s["state"].startswith("ended")
    assert len(store.tracks[1]) > len([f for f in store.tracks[1] if f[0] < store.starts[2]])  # shared with crash

    table = tcu("backend", "sessions", "--store", str(store.path))
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["UNIT", "BOOT", "SID", "PURPOSE"] and len(lines) == 5
    assert lines[4] == "emergencies (crash, sos): 1 real, 0 test calls (not counted as real)"
    assert "crash_notification" in lines[2] and str(len(store.tracks[2])) in lines[2].split()
    assert ANSI not in table.stdout + table.stderr


@pytest.mark.parametrize("sid", [1, 2])
def test_export_gpx_and_geojson_hold_the_stored_track(store: Store, tmp_path: Path, sid: int) -> None:
    gpx_file, geo_file = tmp_path / "track.gpx", tmp_path / "track.geojson"
    result = tcu("backend", "export", "--store", str(store.path), "--session", store.name(sid),
                 "--gpx", str(gpx_file), "--geojson", str(geo_file))
    assert result.returncode == 0, result.stderr
    expected = store.tracks[sid]

    gpx = gpxpy.parse(gpx_file.read_text())
    assert len(gpx.tracks) == 1 and len(gpx.tracks[0].segments) == 1
    assert gpx.tracks[0].type == {1: "theft_tracking", 2: "crash_notification"}[sid]
    assert store.name(sid) in (gpx.description or "")
    points = gpx.tracks[0].segments[0].points
    times = [p.time for p in points if p.time is not None]
    assert [(int(t.timestamp()), round(p.latitude * 1e7), round(p.longitude * 1e7))
            for t, p in zip(times, points, strict=True)] == [f[:3] for f in expected]
    for point, fix in zip(points, expected, strict=True):
        assert point.elevation == fix[5]  # crash tracking sends altitude, theft does not
        speed = point.extensions[0].find(GPXTPX + "speed") if point.extensions else None
        assert speed is not None and speed.text is not None
        assert float(speed.text) == pytest.approx((fix[3] or 0) / 3.6, abs=0.01) and fix[3] is not None

    assert geojson.loads(geo_file.read_text()).is_valid
    # values from plain json: geojson.loads rounds coordinates to 6 decimals, the file has the wire's 7
    collection = json.loads(geo_file.read_text())
    assert collection["type"] == "FeatureCollection"
    track, fixes = collection["features"][0], collection["features"][1:]
    assert track["geometry"]["type"] == "LineString"
    assert [(round(lat * 1e7), round(lon * 1e7)) for lon, lat in track["geometry"]["coordinates"]] == [
        f[1:3] for f in expected]
    assert track["properties"]["session"] == store.name(sid)
    assert (track["properties"]["start"], track["properties"]["end"]) == (iso(store.starts[sid]), iso(store.ends[sid]))
    assert [f["properties"]["time"] for f in fixes] == [iso(f[0]) for f in expected]
    assert [f["geometry"]["coordinates"] for f in fixes] == track["geometry"]["coordinates"]


def test_export_to_stdout_and_a_one_fix_session(store: Store) -> None:
    result = tcu("backend", "export", "--store", str(store.path), "--session", "3", "--geojson", "-")
    assert result.returncode == 0, result.stderr
    assert ANSI not in result.stdout + result.stderr and result.stderr == ""
    assert geojson.loads(result.stdout).is_valid
    collection = json.loads(result.stdout)
    track = collection["features"][0]
    assert track["geometry"]["type"] == "Point" and track["properties"]["purpose"] == "roadside_assistance"
    (when, lat, lon, *_), = store.tracks[3]
    assert track["geometry"]["coordinates"] == [lon / 1e7, lat / 1e7]

    gpx = tcu("backend", "export", "--store", str(store.path), "--session", "car-1/3", "--gpx", "-")
    assert gpx.returncode == 0 and len(gpxpy.parse(gpx.stdout).tracks[0].segments[0].points) == 1


def test_plot_draws_a_readable_png(store: Store, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "track.png"
    result = tcu("backend", "plot", "--store", str(store.path), "-o", str(png))
    assert result.returncode == 0, result.stderr
    assert "3 sessions" in result.stderr
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (900, 800)
        colours = {rgb for _, rgb in image.convert("RGB").getcolors(maxcolors=1 << 20) or ()}
    assert len(colours) > 50  # not blank
    assert (214, 39, 40) in colours and (255, 127, 14) in colours  # crash red, theft orange: both purposes drawn


def test_plot_without_matplotlib_says_how_to_install_it(store: Store, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; from tcu.tools.cli import main; "
            "sys.exit(main(['backend', 'plot', '--store', %r, '-o', %r]))" % (str(store.path), str(tmp_path / "x.png")))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "pip install -e '%s[plot]'" % Path(__file__).resolve().parents[1] in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args, message", [
    (["sessions", "--store", "/nonexistent/store.db"], "no such file"),
    (["sessions", "--store", "NOTASTORE"], "not a tcu backend store"),
    (["export", "--store", "STORE", "--session", "9", "--gpx", "-"], "no such session"),
    (["export", "--store", "STORE", "--session", "a/b/c/d", "--gpx", "-"], "expected SID"),
    (["export", "--store", "STORE", "--gpx", "-"], "name one with --session"),
    (["export", "--store", "STORE", "--session", "1"], "nothing to write"),
    (["export", "--store", "STORE", "--session", "1", "--gpx", "/nonexistent/dir/t.gpx"], "cannot write"),
    (["plot", "--store", "STORE", "--session", "7", "-o", "x.png"], "no such session"),
    (["plot", "--store", "STORE", "-o", "/nonexistent/dir/t.png"], "cannot write"),
    (["plot", "--store", "STORE", "-o", "t.txt"], "Format 'txt' is not supported"),
    (["plot", "--store", "STORE", "-o", "TMPDIR"], "Is a directory"),
    (["sessions", "--store", "DAMAGED"], "database disk image is malformed"),
    (["watch", "--store", "DAMAGED"], "database disk image is malformed"),
    (["watch", "--store", "/nonexistent/store.db"], "no such file"),
])
def test_bad_input_is_one_line_and_exit_2(store: Store, tmp_path: Path, args: list[str], message: str) -> None:
    junk, damaged = tmp_path / "junk.db", tmp_path / "damaged.db"
    junk.write_text("not sqlite\n" * 100)
    data = bytearray(store.path.read_bytes())  # its schema page intact: the damage shows only as rows are read
    data[-4096:] = b"\x55" * 4096
    damaged.write_bytes(data)
    files = {"STORE": str(store.path), "NOTASTORE": str(junk), "DAMAGED": str(damaged), "TMPDIR": str(tmp_path)}
    result = tcu("backend", *[files.get(a, a) for a in args])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_replay_to_an_unwritable_jsonl_is_one_line_and_exit_2(mosquitto: Mosquitto) -> None:
    result = tcu("replay", str(DEMO_TRACE), "--jsonl", "/nonexistent/dir/u.jsonl", "--broker", mosquitto.url)
    assert result.returncode == 2 and "--jsonl /nonexistent/dir/u.jsonl: cannot write it" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_watch_refuses_an_interval_it_cannot_sleep(store: Store) -> None:
    for bad in ("-1", "nan", "0"):
        result = tcu("backend", "watch", "--store", str(store.path), "--interval", bad)
        assert result.returncode == 2 and "not a poll interval" in result.stderr and "Traceback" not in result.stderr


def test_watch_piped_prints_plain_lines(store: Store) -> None:
    total = len(sqlite3.connect(store.path).execute("SELECT rowid FROM uplinks").fetchall())
    result = tcu("backend", "watch", "--store", str(store.path), "--count", str(total))
    assert result.returncode == 0, result.stderr
    assert ANSI not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(store.name(1) + " theft_tracking theft reports 0 active")
    ended = [line for line in lines if "ended" in line]
    by_end = sorted(store.ends, key=lambda s: store.ends[s])
    assert [line.split()[0] for line in ended] == [store.name(sid) for sid in by_end]
    assert "reports %d ended" % len(store.tracks[2]) in ended[-1]


def test_watch_on_a_terminal_draws_a_table(store: Store) -> None:
    shown = on_pty("backend", "watch", "--store", str(store.path), "--count", "20", stdout_too=True)
    assert ANSI in shown and "tcu backend: 20 uplinks" in shown
    assert "car-1" in shown and "crash_notification" in shown and str(store.boot) not in shown  # a boot index
    assert "\u2500" * 20 in shown  # the rule under the table's header


def test_live_receiver_prints_session_lines_when_piped(mosquitto: Mosquitto) -> None:
    backend = subprocess.Popen([*TCU, "backend", "--broker", mosquitto.url, "--live", "--count", "6",
                                "--client-id", "live-%d" % time.monotonic_ns()],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert backend.stderr is not None and "subscribed" in backend.stderr.readline()
        result = tcu("replay", str(DEMO_TRACE), "--trigger", "roadside@3", "--trigger", "assist@6",
                     "--unit", "live-car", "--broker", mosquitto.url)
        assert result.returncode == 0, result.stderr
        out, _ = backend.communicate(timeout=20)
    finally:
        if backend.poll() is None:
            backend.kill()
    assert backend.returncode == 0 and ANSI not in out
    states = [(line.split()[1], line.split()[5]) for line in out.splitlines()]
    assert states == [("roadside_assistance", "active")] * 2 + [("roadside_assistance", "ended")] + [
        ("route_assistance", "active")] * 2 + [("route_assistance", "ended")]


def test_replay_shows_a_progress_bar_on_a_terminal_only(traces: Path, tmp_path: Path) -> None:
    trace = str(traces / "ublox-zed-f9p_hpg1.11.log")  # the largest shared trace, 1.2 MB (0.2 in the subset)
    size, unit = decimal(os.path.getsize(trace)).split()  # "1.2 MB": rich's units, as the bar shows them
    shown = on_pty("replay", trace, "--trigger", "crash@5")
    assert "replay" in shown and "\u2501" in shown and "%s/%s %s" % (size, size, unit) in shown  # the bar, complete
    assert "fixes in sessions" in shown

    quiet = on_pty("replay", trace, "--trigger", "crash@5", "--quiet")
    assert "\u2501" not in quiet and ANSI not in quiet and "fixes in sessions" in quiet

    piped = tcu("replay", trace, "--trigger", "crash@5")
    assert piped.returncode == 0 and ANSI not in piped.stderr and "\u2501" not in piped.stderr
    assert all(line.startswith("replay: ") for line in piped.stderr.splitlines())


def test_fixes_shows_a_bar_only_when_its_output_is_not_the_terminal(traces: Path, tmp_path: Path) -> None:
    trace = str(traces / "ublox-zed-f9p_hpg1.11.log")
    out = tmp_path / "fixes.jsonl"
    shown = on_pty("fixes", trace, "--json", stdout_file=out)
    assert "fixes" in shown and "\u2501" in shown and decimal(os.path.getsize(trace)).split()[1] in shown  # MB
    assert len(out.read_text().splitlines()) > 100 and ANSI not in out.read_text()

    on_terminal = on_pty("fixes", trace, stdout_too=True)  # the lines themselves show progress
    assert "\u2501" not in on_terminal and on_terminal.count("\n") > 100


def test_export_shows_a_bar_on_a_terminal(store: Store, tmp_path: Path) -> None:
    shown = on_pty("backend", "export", "--store", str(store.path), "--session", "2",
                   "--gpx", str(tmp_path / "t.gpx"))
    assert "reading" in shown and "\u2501" in shown and "export: session %s" % store.name(2) in shown
    assert gpxpy.parse((tmp_path / "t.gpx").read_text()).tracks


def test_watch_follows_a_store_while_the_backend_writes_it(mosquitto: Mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "growing.db"
    backend = Backend(mosquitto.url, client_id="grow-%d" % time.monotonic_ns(), persistent=False, store=str(path))
    watch = subprocess.Popen([*TCU, "backend", "watch", "--store", str(path), "--count", "6",
                              "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        result = tcu("replay", str(DEMO_TRACE), "--trigger", "roadside@3", "--trigger", "assist@6",
                     "--unit", "grow-car", "--broker", mosquitto.url)
        assert result.returncode == 0, result.stderr
        out, err = watch.communicate(timeout=20)
    finally:
        if watch.poll() is None:
            watch.kill()
        backend.close()
    assert watch.returncode == 0, err
    assert [line.split()[5] for line in out.splitlines()] == ["active", "active", "ended"] * 2


def test_session_book_takes_batches_and_a_start_that_arrives_late() -> None:
    from tcu.protocol import messages
    from tcu.tools.sessions import SessionBook

    book = SessionBook()
    book.add("u", 1, messages.encode_batch(2, 5, 1, [(4, 10, 20, 36, 3), (6, 12, 24, 72, 4)]))
    (session,) = book.ordered()
    assert [session.time_of(p) for p in session.points] == [None, None] and session.state == "no start"
    book.add("u", 1, messages.encode_session_start(1, 5, 1, 1_700_000_000, 1))
    assert [session.time_of(p) for p in session.points] == [1_700_000_004, 1_700_000_006]
    assert [(p.lat_e7, p.lon_e7, p.speed_ms) for p in session.points] == [(10, 20, 10.0), (12, 24, 20.0)]
    assert session.state == "active" and session.trigger == "crash"
