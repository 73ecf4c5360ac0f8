"""A live table of units and sessions: `tcu backend --broker URL --live` (as uplinks arrive)
and `tcu backend watch --store FILE` (following a store another backend writes).

On a terminal it is a rich.live table redrawn in place; when stdout is not a terminal it
prints one plain line per session change instead (no ANSI), for logs and pipes.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

from tcu.firmware.errors import ProtocolError
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
            try:
                touched = self.book.add(unit, boot, payload)
            except ProtocolError:
                return
            if self._live is None:
                for session in touched:
                    print(plain_line(session), file=self.out, flush=True)
        if self._live is not None:
            self._live.update(self.render())

    def render(self) -> Any:
        from rich.table import Table

        with self._lock:
            sessions = sorted(self.book.sessions.values(), key=lambda s: (s.start_s or 0, s.name))[-MAX_ROWS:]
            units = {(s.unit, s.boot) for s in self.book.sessions.values()}
            table = Table(title="tcu backend: %d uplinks, %d unit boots, %d sessions"
                          % (self.uplinks, len(units), len(self.book.sessions)))
            for column in ("unit/boot/session", "purpose", "trigger", "start (UTC)", "reports", "last fix", "state"):
                table.add_column(column, justify="right" if column == "reports" else "left",
                                 no_wrap=column in ("unit/boot/session", "last fix"))
            for s in sessions:
                last = s.points[-1] if s.points else None
                when = s.time_of(last) if last is not None else None
                fix = "%s %.5f,%.5f" % (iso_utc(when)[11:19] if when else "?", last.lat, last.lon) if last else "-"
                start = iso_utc(s.start_s).replace("T", " ")[:19] if s.start_s is not None else "?"
                table.add_row(s.name, s.purpose or "?", s.trigger or "?", start, str(len(s.points)), fix,
                              "[green]%s[/]" % s.state if s.end_s is None else s.state)
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
