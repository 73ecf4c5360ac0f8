"""What the live table shows, fitted to a terminal's width: `tcu backend --live` and `watch`.

A unit is named by a short label (the distinctive tail of its id, unique among the units
shown) and each of its boots by an index (1, 2, ... in the order first seen) instead of the
10-digit boot number. Ended sessions are pruned beyond the last few, and the title says how many were. The
purpose and trigger names are never cut; the state wraps at its spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tcu.tools.sessions import Session, SessionKey
from tcu.tools.view import iso_utc

KEEP_ENDED = 5  # ended sessions kept in the table; older ones are pruned (and counted)
LABEL_MAX = 8  # a unit label's most characters
WIDE = 130  # from this width on: the start's date and each session's last fix too
_SEPARATORS = re.compile(r"(?<=[-_.:/])")


def unit_labels(units: list[str]) -> dict[str, str]:
    """A short label per unit id, unique among `units`: the whole id if it is short, else its
    shortest unique tail of separator-delimited parts, cut to LABEL_MAX from the left."""
    labels: dict[str, str] = {}
    for unit in units:
        if len(unit) <= LABEL_MAX:
            labels[unit] = unit
            continue
        parts = [p for p in _SEPARATORS.split(unit) if p]
        others = [u for u in units if u != unit]
        tail = unit
        for start in range(len(parts) - 1, -1, -1):
            tail = "".join(parts[start:])
            if not any(o.endswith(tail) for o in others):
                break
        labels[unit] = tail if len(tail) <= LABEL_MAX else "\u2026" + tail[-(LABEL_MAX - 1):]
    short = list(labels.values())
    for index, unit in enumerate(units):  # two tails alike once cut: number them instead
        if short.count(labels[unit]) > 1:
            labels[unit] = "u%d" % (index + 1)
    return labels


@dataclass
class LiveView:
    """Boot indexes in order of first sight, and the ended sessions pruned so far."""

    boots: dict[str, list[int]] = field(default_factory=dict)  # unit -> boot numbers, first seen first
    pruned: set[SessionKey] = field(default_factory=set)

    def saw(self, unit: str, boot: int) -> None:
        seen = self.boots.setdefault(unit, [])
        if boot not in seen:
            seen.append(boot)

    def boot_index(self, unit: str, boot: int) -> int:
        return self.boots[unit].index(boot) + 1

    def prune(self, sessions: dict[SessionKey, Session]) -> None:
        """Drop all but the KEEP_ENDED latest ended sessions from `sessions` (the book's own)."""
        ended = sorted((s for s in sessions.values() if s.end_s is not None), key=lambda s: (s.end_s or 0, s.sid))
        for session in ended[:-KEEP_ENDED] if len(ended) > KEEP_ENDED else []:
            key = (session.unit, session.boot, session.sid)
            del sessions[key]
            self.pruned.add(key)


def state_text(session: Session) -> str:
    """The state in words, which a narrow column wraps at its spaces."""
    if session.end_s is not None:
        state = "ended, %s" % (session.reason or "?").replace("_", " ")
    else:
        state = "active" if session.start_s is not None else "no start"
    return state + ", test call" if session.test else state


def columns(width: int) -> list[str]:
    names = ["unit", "boot", "sid", "purpose", "trigger", "start", "reports", "state"]
    return names + ["last fix"] if width >= WIDE else names


def row(session: Session, label: str, boot_index: int, width: int) -> list[str]:
    start = "?"
    if session.start_s is not None:  # narrow: the time of day (UTC); the date is in the title
        stamp = iso_utc(session.start_s)
        start = stamp.replace("T", " ")[:19] if width >= WIDE else stamp[11:19]
    cells = [label, str(boot_index), str(session.sid), session.purpose or "?", session.trigger or "?", start,
             str(len(session.points)), state_text(session)]
    if width >= WIDE:
        last = session.points[-1] if session.points else None
        when = session.time_of(last) if last is not None else None
        cells.append("%s %.5f,%.5f" % (iso_utc(when)[11:19] if when else "?", last.lat, last.lon) if last else "-")
    return cells
