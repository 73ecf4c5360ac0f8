"""`tcu backend sessions` and `tcu backend export`: the stored sessions, and one session's
track as GPX (gpxpy) or GeoJSON (geojson), for a map, a GIS or a case file.

GPX 1.1 has no speed or course on a track point: they go in Garmin's TrackPointExtension
(v2), which common GPX readers understand. GeoJSON positions are [lon, lat] (RFC 7946) at
the wire's 1e-7 degree precision (the geojson library would round to 1e-6 by default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from tcu.firmware.errors import UsageError
from tcu.tools import progress, seq_gaps
from tcu.tools.sessions import Session, load_sessions, open_store, select, store_errors
from tcu.tools.view import iso_utc

GPXTPX = "http://www.garmin.com/xmlschemas/TrackPointExtension/v2"
COORD_PRECISION = 7  # the wire's 1e-7 degrees
SELECTOR_HELP = "SID, UNIT/SID or UNIT/BOOT/SID (see tcu backend sessions); may be left out if the store holds one"


def register_verbs(verbs: argparse._SubParsersAction) -> None:
    sessions = verbs.add_parser("sessions", help="list the sessions in a backend store")
    sessions.add_argument("--store", required=True, metavar="STORE",
                        help="the store of tcu backend --store: a SQLite file or a postgresql:// URL")
    sessions.add_argument("--json", action="store_true", help="one JSON object per session")
    sessions.set_defaults(run=run_sessions)
    export = verbs.add_parser("export", help="write a stored session's track as GPX and/or GeoJSON")
    export.add_argument("--store", required=True, metavar="STORE",
                        help="the store of tcu backend --store: a SQLite file or a postgresql:// URL")
    export.add_argument("--session", metavar="SEL", help=SELECTOR_HELP)
    export.add_argument("--gpx", metavar="FILE", help="write GPX 1.1 here ('-': stdout)")
    export.add_argument("--geojson", metavar="FILE", help="write a GeoJSON FeatureCollection here ('-': stdout)")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.set_defaults(run=run_export)


def load(store: str, quiet: bool = True, output: Any = None) -> list[Session]:
    """The store's sessions, with a progress bar over its rows when one is wanted."""
    with progress.bar("reading", progress.wanted(quiet, output), unit="uplinks") as update:
        return load_sessions(store, update)


def pick(sessions: list[Session], selector: str | None) -> Session:
    if selector is not None:
        return select(sessions, selector)
    if len(sessions) != 1:
        raise UsageError("the store holds %d sessions: name one with --session %s"
                         % (len(sessions), "UNIT/BOOT/SID" if sessions else "(it has none)"))
    return sessions[0]


def run_sessions(args: argparse.Namespace) -> int:
    sessions = load_sessions(args.store)
    gaps = store_gaps(args.store)
    if args.json:
        for session in sessions:
            print(json.dumps({**session.summary(), "missing_seq": [list(r) for r in gaps.get(
                (session.unit, session.boot), [])]}))
        return 0
    print(sessions_table(sessions))
    if sessions:
        real = sum(1 for s in sessions if s.emergency)
        tests = sum(1 for s in sessions if s.test)
        print("emergencies (crash, sos): %d real, %d test calls (not counted as real)" % (real, tests))
    for (unit, boot), ranges in gaps.items():
        print("gap: unit %s boot %d: %d uplinks missing from the store (seq %s)"
              % (unit, boot, seq_gaps.count(ranges), seq_gaps.describe(ranges)))
    starts = [s.name for s in sessions if s.start_s is None]
    if starts:
        print("no start: %s (their session start is not in the store: times unknown)" % ", ".join(starts))
    return 0


def store_gaps(store: str) -> dict[tuple[str, int], list[seq_gaps.Range]]:
    """(unit, boot) -> the seq ranges missing from the store (seq is contiguous from 1)."""
    gaps = seq_gaps.SeqGaps()
    with contextlib.closing(open_store(store)) as db, store_errors(store):
        for unit, boot, seq in sorted(db.keys()):
            gaps.add(unit, boot, seq)
    return gaps.all()


def sessions_table(sessions: list[Session]) -> str:
    """A plain text table, one session a line."""
    rows = [("UNIT", "BOOT", "SID", "PURPOSE", "TRIGGER", "START", "END", "REPORTS", "STATE")]
    for s in sessions:
        d = s.summary()
        rows.append((s.unit, str(s.boot), str(s.sid), s.purpose or "?", s.trigger or "?", str(d["start"] or "-"),
                     str(d["end"] or "-"), str(len(s.points)), s.state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines) if sessions else "(no sessions in the store)"


def run_export(args: argparse.Namespace) -> int:
    if not args.gpx and not args.geojson:
        raise UsageError("nothing to write: give --gpx FILE and/or --geojson FILE ('-': stdout)")
    if args.gpx == "-" and args.geojson == "-":
        raise UsageError("only one of --gpx and --geojson can go to stdout")
    to_stdout = sys.stdout if "-" in (args.gpx, args.geojson) else None
    session = pick(load(args.store, args.quiet, to_stdout), args.session)
    if args.gpx:
        with _output(args.gpx) as out:
            out.write(to_gpx(session))
    if args.geojson:
        with _output(args.geojson) as out:
            out.write(json.dumps(to_geojson(session)) + "\n")
    if to_stdout is None:
        print("export: session %s (%s), %d fixes" % (session.name, session.purpose, len(session.points)),
              file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        out = open(path, "w", encoding="utf-8")
    except OSError as err:
        raise UsageError("cannot write %s: %s" % (path, err.strerror)) from None
    with out:
        yield out


def _when(unix_s: int | None) -> datetime | None:
    return None if unix_s is None else datetime.fromtimestamp(unix_s, UTC)


def describe(session: Session) -> str:
    span = "%s .. %s" % (iso_utc(session.start_s) if session.start_s is not None else "?",
                         iso_utc(session.end_s) if session.end_s is not None else "?")
    return "purpose=%s; trigger=%s; session=%s; unit=%s; %s; %s" % (
        session.purpose, session.trigger, session.name, session.unit, span, session.state)


def to_gpx(session: Session) -> str:
    """GPX 1.1: one track, one segment; speed (m/s) and course (deg) in TrackPointExtension."""
    import xml.etree.ElementTree as ET

    import gpxpy.gpx

    gpx = gpxpy.gpx.GPX()
    gpx.creator = "tcu-emulator"
    gpx.nsmap["gpxtpx"] = GPXTPX
    gpx.name = "tcu session %s" % session.name
    gpx.description = describe(session)
    gpx.time = _when(session.start_s)
    track = gpxpy.gpx.GPXTrack(name=gpx.name, description=gpx.description)
    track.type = session.purpose  # type: ignore[assignment]  # gpxpy leaves GPXTrack.type unannotated: None
    segment = gpxpy.gpx.GPXTrackSegment()
    track.segments.append(segment)
    gpx.tracks.append(track)
    for p in session.points:
        point = gpxpy.gpx.GPXTrackPoint(p.lat, p.lon, elevation=p.alt_m, time=_when(session.time_of(p)))
        if p.sats is not None:
            point.satellites = p.sats
        if p.hdop is not None:
            point.horizontal_dilution = p.hdop
        motion = [("speed", p.speed_ms), ("course", p.course_deg)]
        if any(value is not None for _, value in motion):
            ext = ET.Element("{%s}TrackPointExtension" % GPXTPX)
            for name, value in motion:
                if value is not None:
                    ET.SubElement(ext, "{%s}%s" % (GPXTPX, name)).text = str(value)
            point.extensions.append(ext)
        segment.points.append(point)
    return str(gpx.to_xml(version="1.1"))


def to_geojson(session: Session) -> Any:
    """A FeatureCollection: the track (LineString; a Point for a single fix, no geometry for
    none) with the session's properties, then one Point feature per fix."""
    import geojson

    coords = [(p.lon, p.lat) for p in session.points]
    if len(coords) >= 2:
        geometry: Any = geojson.LineString(coords, precision=COORD_PRECISION)
    elif coords:
        geometry = geojson.Point(coords[0], precision=COORD_PRECISION)
    else:
        geometry = None
    summary = session.summary()
    track = geojson.Feature(geometry=geometry, properties={
        "kind": "track", "purpose": session.purpose, "trigger": session.trigger, "session": session.name,
        "unit": session.unit, "boot": session.boot, "sid": session.sid, "case": session.case,
        "start": summary["start"], "end": summary["end"], "state": session.state, "fixes": len(coords)})
    features = [track]
    for p, coord in zip(session.points, coords, strict=True):
        when = session.time_of(p)
        features.append(geojson.Feature(geometry=geojson.Point(coord, precision=COORD_PRECISION), properties={
            "kind": "fix", "time": iso_utc(when) if when is not None else None, "speed": p.speed_ms,
            "course": p.course_deg, "alt": p.alt_m, "purpose": p.purpose, "session_sent": p.sid}))
    return geojson.FeatureCollection(features)
