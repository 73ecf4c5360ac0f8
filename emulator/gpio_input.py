"""The `gpio:PIN=KIND[,cancel-hold=S]` trigger input: a push button on a Raspberry Pi.

A button between GPIO PIN (BCM numbering) and ground, through gpiozero (an optional
dependency), with the semantics documented in emulator/inputs.py.
"""

from __future__ import annotations

from typing import Any

from tcu.emulator.inputs import BOUNCE_S, Deliver, Report, _Commands
from tcu.firmware.errors import UsageError
from tcu.firmware.services import TRIGGERS_BY_NAME, WHILE_HELD, default_services
from tcu.hal.indicator import open_gpiozero


class GpioInput(_Commands):
    """A push button to ground (internal pull-up); gpiozero calls back from its own threads."""

    def __init__(self, spec: str, arg: str, deliver: Deliver, report: Report) -> None:
        super().__init__(spec, deliver, report)
        pin, kind, hold_s = _gpio_spec(spec, arg)
        self.button: Any = open_gpiozero("input %s" % spec, lambda gpiozero: gpiozero.Button(
            pin, bounce_time=BOUNCE_S, hold_time=hold_s or 1.0))
        self.button.when_pressed = lambda: self.send({"op": "trigger", "kind": kind})
        held = default_services()[TRIGGERS_BY_NAME[kind]].mode == WHILE_HELD
        if held:
            self.button.when_released = lambda: self.send({"op": "clear", "kind": kind})
        if hold_s:
            self.button.when_held = lambda: self.send({"op": "cancel", "kind": kind})
        if held and self.button.is_pressed:  # an alarm line already active at start
            self.send({"op": "trigger", "kind": kind})

    def close(self) -> None:
        self.button.close()


def _gpio_spec(spec: str, arg: str) -> tuple[int, str, float | None]:
    """'17=sos,cancel-hold=3' -> (17, 'sos', 3.0)."""
    pin, _, rest = arg.partition("=")
    kind, _, option = rest.partition(",")
    if not pin.isdigit() or kind not in TRIGGERS_BY_NAME:
        raise UsageError("input %r: expected gpio:PIN=KIND[,cancel-hold=SECONDS], KIND one of %s"
                         % (spec, ", ".join(sorted(TRIGGERS_BY_NAME))))
    if not option:
        return int(pin), kind, None
    name, _, value = option.partition("=")
    try:
        hold_s = float(value)
    except ValueError:
        hold_s = 0.0
    if name != "cancel-hold" or not 0 < hold_s <= 60:
        raise UsageError("input %r: the option is cancel-hold=SECONDS (0 < SECONDS <= 60)" % spec)
    if not default_services()[TRIGGERS_BY_NAME[kind]].occupant_can_cancel:
        raise UsageError("input %r: the occupant cannot cancel a %s session: no cancel-hold" % (spec, kind))
    return int(pin), kind, hold_s
