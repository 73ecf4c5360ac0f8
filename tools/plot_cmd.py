"""`tcu backend plot`: a PNG of stored tracks with the trigger windows that disclosed them.

Top: the fixes on lon/lat axes (a degree of longitude is cos(lat) of a degree of latitude,
so the aspect is corrected), coloured by the purpose they were sent for; a fix that served
several sessions at once is ringed; each session's first and last fix are marked. Below: a
time strip, one row per purpose, with each session's window (start..end) and its fixes.

matplotlib is an optional extra (the `plot` extra: `pip install -e '.[plot]'` in the clone),
imported only here.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from datetime import UTC, datetime
from typing import Any

from tcu.firmware.errors import UsageError
from tcu.firmware.services import PURPOSE_NAMES
from tcu.tools.extras import extra_hint
from tcu.tools.plot_layout import place_labels, thin_ticks
from tcu.tools.sessions import Point, Session

PALETTE = ("tab:red", "tab:orange", "tab:purple", "tab:blue", "tab:green", "tab:brown", "tab:gray")
COLOURS = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(PURPOSE_NAMES.values())}


def register_verb(verbs: argparse._SubParsersAction) -> None:
    plot = verbs.add_parser("plot", help="draw stored sessions' tracks and trigger windows as a PNG "
                                         "(needs the plot extra)")
    plot.add_argument("--store", required=True, metavar="STORE",
                        help="the store of tcu backend --store: a SQLite file or a postgresql:// URL")
    plot.add_argument("--session", action="append", metavar="SEL",
                      help="SID, UNIT/SID or UNIT/BOOT/SID; repeatable (default: every session in the store)")
    plot.add_argument("-o", "--output", required=True, metavar="PNG", help="the image to write")
    plot.add_argument("--quiet", action="store_true", help="no progress bar")
    plot.set_defaults(run=run)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plotting needs matplotlib: %s" % extra_hint("plot", "matplotlib")) from None
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def run(args: argparse.Namespace) -> int:
    from tcu.tools.export_cmd import load
    from tcu.tools.sessions import select

    plt = _pyplot()
    sessions = load(args.store, args.quiet)
    if args.session:
        sessions = list({s.name: s for s in (select(sessions, sel) for sel in args.session)}.values())
    if not sessions:
        raise UsageError("the store holds no sessions to plot")
    figure = draw(plt, sessions)
    # No suffix: a PNG under that very name (matplotlib would write NAME.png, not the file named).
    kind = None if os.path.splitext(args.output)[1] else "png"
    try:
        figure.savefig(args.output, dpi=100, format=kind)
    except OSError as err:
        raise UsageError("cannot write %s: %s" % (args.output, err.strerror)) from None
    except ValueError as err:  # a suffix matplotlib has no writer for
        raise UsageError("cannot write %s: %s" % (args.output, err)) from None
    finally:
        plt.close(figure)
    fixes = len(_unique_fixes(sessions))
    print("plot: %d sessions, %d fixes -> %s" % (len(sessions), fixes, args.output), file=sys.stderr)
    return 0


def _unique_fixes(sessions: list[Session]) -> dict[tuple[str, int, int, int], tuple[Point, str]]:
    """Each fix once (a report shared by sessions is in each of their tracks), with the
    purpose to colour it by: the one it was sent for, or if that session is not plotted,
    the first plotted session's it served."""
    plotted = {(s.unit, s.boot, s.sid) for s in sessions}
    fixes: dict[tuple[str, int, int, int], tuple[Point, str]] = {}
    for session in sessions:
        for p in session.points:
            key = (session.unit, session.boot, p.sid, p.dt)
            if key not in fixes:
                own = (session.unit, session.boot, p.sid) in plotted
                fixes[key] = (p, (p.purpose if own else session.purpose) or "?")
    return fixes


def draw(plt: Any, sessions: list[Session]) -> Any:
    figure, (track, strip) = plt.subplots(2, 1, figsize=(9, 8), gridspec_kw={"height_ratios": [3, 1]})
    _draw_track(track, sessions)
    _draw_strip(strip, sessions)
    figure.suptitle("tcu: %d session%s, %s" % (len(sessions), "" if len(sessions) == 1 else "s",
                                                ", ".join(sorted({s.unit for s in sessions}))))
    figure.tight_layout()
    # Once laid out: as many longitude ticks as fit, and the session labels clear of each other.
    thin_ticks(figure, track)
    names = _labels(sessions)
    place_labels(figure, track, [(s.points[0].lon, s.points[0].lat, names[s.name]) for s in sessions if s.points])
    several = len({s.unit for s in sessions}) > 1
    place_labels(figure, strip, [(_num(w[0]), sessions_row, names[s.name] if several else "session %d" % s.sid)
                                 for s, w, sessions_row in _strip_anchors(sessions)], along=True)
    return figure


def _labels(sessions: list[Session]) -> dict[str, str]:
    """Each session's label: its sid, with its unit when several units are drawn, and its boot
    too when one unit's sid comes from several boots."""
    units = {s.unit for s in sessions}
    sids = [(s.unit, s.sid) for s in sessions]
    return {s.name: (s.name if sids.count((s.unit, s.sid)) > 1 else "%s/%d" % (s.unit, s.sid) if len(units) > 1
                     else str(s.sid)) for s in sessions}


def _strip_anchors(sessions: list[Session]) -> list[tuple[Session, tuple[int, int], float]]:
    purposes = sorted({s.purpose or "?" for s in sessions})
    return [(s, w, purposes.index(s.purpose or "?") + 0.3) for s in sessions if (w := _window(s)) is not None]


def _draw_track(ax: Any, sessions: list[Session]) -> None:
    fixes = list(_unique_fixes(sessions).values())
    if not fixes:
        ax.text(0.5, 0.5, "no located fixes in these sessions", ha="center", va="center", transform=ax.transAxes)
        return
    for session in sessions:  # each session's path, thin, in its purpose's colour
        colour = COLOURS.get(session.purpose or "", "black")
        ax.plot([p.lon for p in session.points], [p.lat for p in session.points], "-", color=colour,
                linewidth=0.8, alpha=0.6)
        if session.points:
            first, last = session.points[0], session.points[-1]
            ax.plot(first.lon, first.lat, marker=">", color=colour, markersize=10, markeredgecolor="black")
            ax.plot(last.lon, last.lat, marker="s", color=colour, markersize=8, markeredgecolor="black")
    for purpose in sorted({colour_by for _, colour_by in fixes}):
        points = [p for p, colour_by in fixes if colour_by == purpose]
        ax.scatter([p.lon for p in points], [p.lat for p in points], s=14, color=COLOURS.get(purpose, "black"),
                   edgecolors=["black" if len(p.serves) > 1 else "none" for p in points], label=purpose, zorder=3)
    for purpose in sorted({s.purpose or "" for s in sessions} - {colour_by for _, colour_by in fixes}):
        # A session whose fixes were all sent for another one still gets its colour named.
        ax.scatter([], [], s=14, color=COLOURS.get(purpose, "black"), label=purpose)
    ax.plot([], [], ">", color="gray", label="session start (first fix)")
    ax.plot([], [], "s", color="gray", label="session end (last fix)")
    if any(len(p.serves) > 1 for p, _ in fixes):
        ax.scatter([], [], s=14, color="white", edgecolors="black", label="fix serving several sessions")
    _limits(ax, [p for p, _ in fixes])
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.ticklabel_format(useOffset=False)
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)


def _limits(ax: Any, points: list[Point]) -> None:
    """At least ~200 m around the fixes (one fix alone would get a degree-wide view), and the
    aspect corrected: a degree of longitude is cos(latitude) of a degree of latitude."""
    lats, lons = [p.lat for p in points], [p.lon for p in points]
    mid_lat = (min(lats) + max(lats)) / 2
    scale = max(math.cos(math.radians(mid_lat)), 0.01)
    half = max(max(lats) - min(lats), (max(lons) - min(lons)) * scale, 0.002) / 2 * 1.1
    mid_lon = (min(lons) + max(lons)) / 2
    ax.set_ylim(mid_lat - half, mid_lat + half)
    ax.set_xlim(mid_lon - half / scale, mid_lon + half / scale)
    ax.set_aspect(1 / scale)


def _draw_strip(ax: Any, sessions: list[Session]) -> None:
    import matplotlib.dates as mdates

    purposes = sorted({s.purpose or "?" for s in sessions})
    windows = [w for w in (_window(s) for s in sessions) if w is not None]
    span = max((end for _, end in windows), default=0) - min((start for start, _ in windows), default=0)
    for session in sessions:
        row = purposes.index(session.purpose or "?")
        window = _window(session)
        if window is None:
            continue
        start, end = window
        times = [t for t in (session.time_of(p) for p in session.points) if t is not None]
        colour = COLOURS.get(session.purpose or "", "black")
        width = max(end - start, span / 200, 1)  # a one-fix session stays visible
        ax.barh(row, width / 86400, left=_num(start), height=0.5, color=colour, alpha=0.35)
        ax.plot([_num(t) for t in times], [row] * len(times), "|", color=colour, markersize=9)
    ax.set_yticks(range(len(purposes)), purposes)
    ax.set_ylim(-0.6, len(purposes) - 0.2)
    if windows:  # some room either side, and a minute at least
        first, last = min(w[0] for w in windows), max(w[1] for w in windows)
        pad = max(span * 0.03, 30)
        ax.set_xlim(_num(int(first - pad)), _num(int(last + pad)))
    ax.xaxis_date(tz=UTC)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    if windows:
        ax.set_xlabel("time (UTC), %s" % datetime.fromtimestamp(windows[0][0], UTC).strftime("%Y-%m-%d"))
    ax.grid(axis="x", alpha=0.3)


def _window(session: Session) -> tuple[int, int] | None:
    """start..end of a session; the first/last fix stands in for a start or end not stored."""
    times = [t for t in (session.time_of(p) for p in session.points) if t is not None]
    start = session.start_s if session.start_s is not None else min(times, default=None)
    end = session.end_s if session.end_s is not None else max(times, default=start)
    return None if start is None or end is None else (start, end)


def _num(unix_s: int) -> float:
    import matplotlib.dates as mdates

    return float(mdates.date2num(datetime.fromtimestamp(unix_s, UTC)))
