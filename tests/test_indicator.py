"""The privacy indicator output follows the sessions exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcu.firmware import services as sv
from tcu.firmware.errors import UsageError
from tcu.firmware.events import Indicator, Tick, TriggerOff, TriggerOn
from tcu.firmware.unit import Unit
from tcu.hal.indicator import open_indicator

T0 = 1_778_745_600_000


def test_a_file_indicator_is_on_exactly_while_a_session_is_active(tmp_path: Path) -> None:
    led = open_indicator("file:%s" % (tmp_path / "privacy"))
    state = tmp_path / "privacy"
    assert state.read_text() == "0\n"
    unit = Unit()
    seen = []
    for event, now in ((TriggerOn(sv.THEFT), T0), (TriggerOn(sv.ROADSIDE), T0 + 1), (TriggerOff(sv.THEFT), T0 + 2),
                       (Tick(), T0 + 200_000)):
        for action in unit.handle(event, now):
            if isinstance(action, Indicator):
                led.set(action.on)
        seen.append((state.read_text(), bool(unit.sessions)))
    assert seen == [("1\n", True), ("1\n", True), ("1\n", True), ("0\n", False)]
    led.close()
    assert state.read_text() == "0\n"


@pytest.mark.parametrize("spec, message", [
    ("led", "expected none, file:PATH"),
    ("file:/nonexistent-dir/x", "does not exist"),
    ("sysfs-led:no-such-led", "no such LED"),
    ("gpio:x", "expected none"),
])
def test_bad_indicator_specs_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        open_indicator(spec)
