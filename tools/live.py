"""A live table of units and sessions: `tcu backend --broker URL --live` (as uplinks arrive)
and `tcu backend watch --store FILE` (following a store another backend writes).

On a terminal it is a rich.live table redrawn in place; when stdout is not a terminal it
prints one plain line per session change instead (no ANSI), for logs and pipes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from tcu.firmware.errors import ProtocolError
from tcu.tools.live_view import WIDE, LiveView, columns, row, unit_labels
from tcu.tools.sessions import Session, SessionBook, open_store, store_errors
from tcu.tools.view import iso_utc

MAX_ROWS = 30  # the most recent sessions; older ones scroll off a terminal anyway


def register_verb(verbs: argparse._SubParsersAction) -> None:
    watch = verbs.add_parser("watch", help="a live table of the sessions in a store another backend writes")
    watch.add_argument("--store", required=True, metavar="STORE",
                        help="the store of tcu backend --store: a SQLite file or a postgresql:// URL")
    watch.add_argument("--interval", type=_interval, default=0.5, metavar="S", help="poll every S seconds (0.5)")
    watch.add_argument("--count", type=int, default=0, help="exit after this many uplinks (0: until Ctrl-C)")
    watch.set_defaults(run=run_watch)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:  # NaN too: time.sleep would refuse it
        raise argparse.ArgumentTypeError("not a poll interval in seconds (0..3600]: %r" % text)
    return value


def plain_line(session: Session) -> str:
    last = session.points[-1] if session.points else None
    where = " last %.7f,%.7f" % (last.lat, last.lon) if last is not None else ""
    return "%s %s %s reports %d %s%s" % (session.name, session.purpose or "?", session.trigger or "?",
                                         len(session.points), session.state, where)


class LiveTable:
    """Feeds a SessionBook; shows it as a redrawn table on a terminal, plain lines elsewhere."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.book = SessionBook()
        self.view = LiveView()
        self.uplinks = 0
        self._lock = threading.Lock()  # paho's thread adds, rich's thread renders
        self._live: Any = None
        self.is_terminal = self.out.isatty()

    def __enter__(self) -> LiveTable:
        if self.is_terminal:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self.render(), console=Console(file=self.out), refresh_per_second=4,
                              redirect_stdout=False)  # stderr lines (subscribed, rejected) go above it
            self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self.render(), refresh=True)
            self._live.stop()

    def add(self, unit: str, boot: int, payload: bytes) -> None:
        with self._lock:
            self.uplinks += 1
            self.view.saw(unit, boot)
            try:
                touched = self.book.add(unit, boot, payload)
            except ProtocolError:
                return
            if self._live is None:
                for session in touched:
                    print(plain_line(session), file=self.out, flush=True)
            for key in [(s.unit, s.boot, s.sid) for s in touched if (s.unit, s.boot, s.sid) in self.view.pruned]:
                self.book.sessions.pop(key, None)  # a late report of a pruned session does not bring it back
            self.view.prune(self.book.sessions)
        if self._live is not None:
            self._live.update(self.render())

    def _width(self) -> int:
        """The live console's width, which follows resizes; else COLUMNS or the terminal's."""
        if hasattr(self._live, "console"):
            return int(self._live.console.width)
        return shutil.get_terminal_size().columns

    def render(self, width: int | None = None) -> Any:
        """The table at `width` columns (the terminal's, as shutil or COLUMNS says, by default)."""
        from rich import box
        from rich.table import Table

        cols = width if width is not None else self._width()
        with self._lock:
            shown = sorted(self.book.sessions.values(), key=lambda s: (s.start_s or 0, s.unit, s.boot, s.sid))
            labels = unit_labels(sorted({s.unit for s in shown}))
            dates = sorted({iso_utc(s.start_s)[:10] for s in shown if s.start_s is not None})
            title = "tcu backend: %d uplinks, %d units, %d sessions" % (
                self.uplinks, len(self.view.boots), len(shown) + len(self.view.pruned))
            if self.view.pruned:
                title += " (%d ended not shown)" % len(self.view.pruned)
            if dates and cols < WIDE:
                title += ", started %s UTC" % (dates[0] if len(dates) == 1 else dates[0] + ".." + dates[-1])
            table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0), expand=False)
            for name in columns(cols):
                table.add_column(name, justify="right" if name in ("boot", "sid", "reports") else "left",
                                 no_wrap=name != "state", overflow="fold")
            for s in shown[-MAX_ROWS:]:
                cells = row(s, labels[s.unit], self.view.boot_index(s.unit, s.boot), cols)
                if s.end_s is None:
                    cells[7] = "[green]%s[/]" % cells[7]
                table.add_row(*cells)
        return table


def run_watch(args: argparse.Namespace) -> int:
    """Follow the store by rowid: new rows are the uplinks the writing backend stored since."""
    db = open_store(args.store)
    last = 0
    try:
        with store_errors(args.store), LiveTable() as table:
            while not args.count or table.uplinks < args.count:
                rows = db.since(last)
                for rowid, unit, boot, payload in rows:
                    table.add(unit, boot, payload)
                    last = rowid
                    if args.count and table.uplinks >= args.count:
                        break
                else:
                    if not rows:
                        time.sleep(args.interval)
    finally:
        db.close()
    return 0
