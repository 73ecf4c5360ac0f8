"""The live table of `tcu backend --live` and `watch` at a terminal's width: several units
(long ids alike but for their tails), two boots of one, every purpose and the longest end
reasons, rendered by rich at 80 columns, checked line by line as a terminal would show it."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from tcu.firmware import services as sv
from tcu.firmware import transitions as tr
from tcu.protocol import messages as m
from tcu.tools.live import LiveTable
from tcu.tools.live_view import KEEP_ENDED, unit_labels

T0 = 1_780_000_000
UNITS = ["fleet-eu-west-000117", "fleet-eu-west-000118", "car-1"]
BOOTS = {"fleet-eu-west-000117": [1_779_990_001, 1_779_995_555], "fleet-eu-west-000118": [1_779_990_002],
         "car-1": [1_779_990_003]}
TRIGGERS = {sv.CRASH: sv.P_CRASH_NOTIFICATION, sv.THEFT: sv.P_THEFT_TRACKING, sv.SOS: sv.P_EMERGENCY_CALL,
            sv.ROADSIDE: sv.P_ROADSIDE_ASSISTANCE, sv.ASSIST: sv.P_ROUTE_ASSISTANCE,
            sv.STOLEN: sv.P_STOLEN_VEHICLE_TRACKING, sv.LAWFUL: sv.P_LAWFUL_REQUEST}


def feed(table: LiveTable, unit: str, boot: int, sid: int, trigger: int, reports: int, end: int | None) -> None:
    purpose, start = TRIGGERS[trigger], T0 + 60 * sid
    table.add(unit, boot, m.encode_session_start(sid * 100, sid, purpose, start, trigger))
    for i in range(reports):
        table.add(unit, boot, m.encode_report(sid * 100 + 1 + i, sid, purpose, i, 485_000_000 + i, 23_000_000))
    if end is not None:
        table.add(unit, boot, m.encode_session_end(sid * 100 + 99, sid, start + 50, end))


def shown(table: LiveTable, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(table.render(width))
    return capture.get().splitlines()


class Redraws:
    def __init__(self) -> None:
        self.count = 0

    def update(self, renderable: object) -> None:
        self.count += 1


def wrapped_states(lines: list[str]) -> list[str]:
    """The state column's cells, each joined from the lines it wraps over."""
    header = next(line for line in lines if line.startswith("unit"))
    at = header.index("state")
    states: list[str] = []
    for line in lines[lines.index(header) + 2:]:
        if line[:at].strip():
            states.append(line[at:].strip())
        else:
            states[-1] += " " + line[at:].strip()
    return states


@pytest.fixture
def table() -> LiveTable:
    table = LiveTable(out=io.StringIO())
    table._live = Redraws()  # as on a terminal: the table redrawn, no plain lines
    sid = 0
    for unit in UNITS:
        for boot in BOOTS[unit]:
            for trigger, end in ((sv.STOLEN, tr.REASON_BACKEND_CANCELLED), (sv.ROADSIDE, tr.REASON_TIME_BOUND),
                                 (sv.CRASH, None)):
                sid += 1
                feed(table, unit, boot, sid, trigger, 3, end)
    return table


def test_at_80_columns_every_field_is_whole_and_no_line_is_longer(table: LiveTable) -> None:
    lines = shown(table, 80)
    assert lines and max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    assert "\u2026" not in text  # nothing collapsed to an ellipsis
    rows = [line for line in lines if re.match(r"\s*(\S+)\s+\d+\s+\d+\s+[a-z_]+\s+[a-z]+\s+\d\d:\d\d:\d\d", line)]
    assert len(rows) == len(table.book.sessions) == 9
    assert {row.split()[0] for row in rows} == {"000117", "000118", "car-1"}  # short, unique labels
    assert "1779990001" not in text and "1779995555" not in text  # no boot numbers
    stolen = [r for r in rows if "stolen_vehicle_tracking" in r]
    assert stolen and all(" stolen " in r for r in stolen)
    assert all(re.search(r"\b3\s+(ended|active)", r) for r in rows)  # reports, then the state
    states = wrapped_states(lines)
    assert len(states) == len(rows)
    assert states.count("ended, backend cancelled") == 2 and states.count("ended, time bound") == 3
    assert any("crash_notification" in r and " crash " in r and "active" in r for r in rows)
    boots = {(row.split()[0], row.split()[1]) for row in rows}
    assert ("000117", "2") in boots and ("car-1", "1") in boots and ("car-1", "2") not in boots


def test_ended_sessions_are_pruned_beyond_the_last_few_and_counted(table: LiveTable) -> None:
    ended = [s for s in table.book.sessions.values() if s.end_s is not None]
    assert len(ended) == KEEP_ENDED  # 8 ended, the 5 latest kept
    assert len([s for s in table.book.sessions.values() if s.end_s is None]) == 4  # every active one stays
    assert "3 ended not shown" in "\n".join(shown(table, 80))
    pruned = sorted(table.view.pruned)[0]
    table.add(pruned[0], pruned[1], m.encode_report(9999, pruned[2], sv.P_THEFT_TRACKING, 9, 1, 1))
    assert pruned not in table.book.sessions  # a late report does not bring it back


def test_wide_terminals_get_the_date_and_the_last_fix(table: LiveTable) -> None:
    lines = shown(table, 160)
    assert max(len(line) for line in lines) <= 160
    assert "last fix" in lines[1] + lines[2] and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "\n".join(lines))


@pytest.mark.parametrize("width", [60, 72, 100, 129, 130])
def test_no_line_exceeds_other_widths(table: LiveTable, width: int) -> None:
    assert max(len(line) for line in shown(table, width)) <= width


def test_unit_labels_are_short_distinct_tails() -> None:
    assert unit_labels(["car-1", "car-2"]) == {"car-1": "car-1", "car-2": "car-2"}
    labels = unit_labels(["fleet-eu-west-000117", "fleet-eu-west-000118", "fleet-us-east-000117"])
    assert labels["fleet-eu-west-000118"] == "000118"
    assert len(set(labels.values())) == 3 and all(len(v) <= 8 for v in labels.values())
    cut = unit_labels(["3f2a9c1e-77aa-4d1b-9b7e-21c4d0aa5511", "3f2a9c1e-77aa-4d1b-9b7e-21c4d0aa6622"])
    assert len(set(cut.values())) == 2 and all(len(v) <= 8 for v in cut.values())
