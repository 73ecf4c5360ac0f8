"""A fleet scenario (TOML): what happens to the units while `tcu fleet` runs.

    duration = "5m"          # or seconds; --duration overrides it
    seed = 1                 # the same seed picks the same units
    [rates]                  # local triggers per unit-hour, by kind
    crash = 0.01
    theft = 0.02
    [[events]]               # scripted: at 60 s, 2% of the units crash
    at = "60s"
    share = "2%"             # or a fraction, 0.02; or units = 3
    trigger = "crash"        # crash, theft, sos, roadside, assist
    hold = "30s"             # optional: the input clears after this (theft alarm disarmed)
    [[events]]               # a signed backend command to a share of the units
    at = 30
    share = "1%"
    command = "lawful-request"   # lawful-request, track-stolen, locate-now (units in a session), cancel
    for = "10m"              # lawful-request, track-stolen
    case = "LR-2026-1"
    [churn]                  # per unit-hour: reboots (a new boot) and outages (the link drops)
    reboots = 0.1
    outages = 0.2
    outage = "20s"           # how long an outage lasts
    reboot = "5s"            # how long a reboot keeps the unit off line

A mistake stops the start with one line naming the file and the key, like the unit's config.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from tcu.firmware.errors import UsageError
from tcu.firmware.services import TRIGGERS_BY_NAME

COMMANDS = ("lawful-request", "track-stolen", "locate-now", "cancel")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_SHARE = re.compile(r"^(\d+(?:\.\d+)?)\s*%$")
TOP_KEYS = ("duration", "seed", "rates", "events", "churn")
EVENT_KEYS = ("at", "share", "units", "trigger", "hold", "command", "for", "case")
CHURN_KEYS = ("reboots", "outages", "outage", "reboot")


@dataclass(frozen=True)
class Event:
    at_s: float
    share: float | None  # of the units (0..1); or
    units: int | None  # a number of units
    trigger: int | None = None  # a local trigger kind, or
    command: str | None = None  # a backend command
    hold_s: float | None = None
    for_s: float = 600.0
    case: str = "fleet"

    def count(self, total: int) -> int:
        """How many of `total` units this event picks (at least one for a share above 0)."""
        if self.units is not None:
            return min(total, self.units)
        assert self.share is not None
        return min(total, max(1 if self.share > 0 else 0, round(self.share * total)))


@dataclass(frozen=True)
class Scenario:
    duration_s: float | None = None
    seed: int = 1
    rates: dict[int, float] = field(default_factory=dict)  # trigger kind -> per unit-hour
    events: tuple[Event, ...] = ()
    reboots: float = 0.0  # per unit-hour
    outages: float = 0.0
    outage_s: float = 20.0
    reboot_s: float = 5.0

    @property
    def commands(self) -> bool:
        return any(e.command for e in self.events)


def load(path: str) -> Scenario:
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as err:
        raise UsageError("%s: cannot read it: %s" % (path, err.strerror or err)) from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError("%s: not valid TOML: %s" % (path, err)) from None
    return parse(data, path)


def parse(data: dict[str, Any], where: str) -> Scenario:
    _known(data, TOP_KEYS, where, "")
    rates_table = _table(data.get("rates", {}), where, "rates")
    rates = {}
    for name, value in rates_table.items():
        if name not in TRIGGERS_BY_NAME:
            raise UsageError("%s: rates.%s: unknown trigger: expected one of %s"
                             % (where, name, ", ".join(sorted(TRIGGERS_BY_NAME))))
        rates[TRIGGERS_BY_NAME[name]] = _rate(value, where, "rates." + name)
    events = data.get("events", [])
    if not isinstance(events, list):
        raise UsageError("%s: events must be an array of tables ([[events]])" % where)
    churn = _table(data.get("churn", {}), where, "churn")
    _known(churn, CHURN_KEYS, where, "churn.")
    seed = data.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UsageError("%s: seed = %r: expected a whole number" % (where, seed))
    duration = data.get("duration")
    return Scenario(
        duration_s=None if duration is None else _duration(duration, where, "duration"),
        seed=seed, rates=rates,
        events=tuple(sorted((_event(e, where, "events[%d]" % i) for i, e in enumerate(events)), key=lambda e: e.at_s)),
        reboots=_rate(churn.get("reboots", 0), where, "churn.reboots"),
        outages=_rate(churn.get("outages", 0), where, "churn.outages"),
        outage_s=_duration(churn.get("outage", 20), where, "churn.outage"),
        reboot_s=_duration(churn.get("reboot", 5), where, "churn.reboot"))


def _event(value: Any, where: str, name: str) -> Event:
    table = _table(value, where, name)
    _known(table, EVENT_KEYS, where, name + ".")
    if "at" not in table:
        raise UsageError("%s: %s.at: missing: when it happens, in seconds from the start" % (where, name))
    if ("trigger" in table) == ("command" in table):
        raise UsageError("%s: %s: expected one of trigger = KIND or command = NAME" % (where, name))
    if ("share" in table) == ("units" in table):
        raise UsageError("%s: %s: expected one of share = \"2%%\" or units = N" % (where, name))
    share = _share(table["share"], where, name + ".share") if "share" in table else None
    units = table.get("units")
    if units is not None and (not isinstance(units, int) or isinstance(units, bool) or units < 1):
        raise UsageError("%s: %s.units = %r: expected a whole number of units, at least 1" % (where, name, units))
    trigger = None
    if "trigger" in table:
        if table["trigger"] not in TRIGGERS_BY_NAME:
            raise UsageError("%s: %s.trigger = %r: expected one of %s"
                             % (where, name, table["trigger"], ", ".join(sorted(TRIGGERS_BY_NAME))))
        trigger = TRIGGERS_BY_NAME[table["trigger"]]
    command = table.get("command")
    if command is not None and command not in COMMANDS:
        raise UsageError("%s: %s.command = %r: expected one of %s" % (where, name, command, ", ".join(COMMANDS)))
    case = table.get("case", "fleet")
    if not isinstance(case, str) or not 0 < len(case) <= 64:
        raise UsageError("%s: %s.case = %r: expected a case reference of 1 to 64 characters" % (where, name, case))
    hold = table.get("hold")
    return Event(_duration(table["at"], where, name + ".at", zero=True), share, units, trigger, command,
                 None if hold is None else _duration(hold, where, name + ".hold"),
                 _duration(table.get("for", "10m"), where, name + ".for"), case)


def _known(table: dict[str, Any], keys: tuple[str, ...], where: str, prefix: str) -> None:
    for key in table:
        if key not in keys:
            raise UsageError("%s: %s%s: unknown key: expected one of %s" % (where, prefix, key, ", ".join(keys)))


def _table(value: Any, where: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError("%s: %s must be a table ([%s])" % (where, name, name))
    return value


def _rate(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 3600:
        raise UsageError("%s: %s = %r: expected events per unit-hour, from 0 to 3600" % (where, name, value))
    return float(value)


def _share(value: Any, where: str, name: str) -> float:
    if isinstance(value, str) and _SHARE.match(value.strip()):
        share = float(_SHARE.match(value.strip()).group(1)) / 100  # type: ignore[union-attr]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    else:
        share = -1.0
    if not 0 <= share <= 1:
        raise UsageError("%s: %s = %r: expected a percentage (\"2%%\") or a fraction from 0 to 1"
                         % (where, name, value))
    return share


def _duration(value: Any, where: str, name: str, zero: bool = False) -> float:
    """Seconds, from a number or "90s", "15m", "2h", "500ms"."""
    seconds = -1.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.match(value.strip()):
        number, unit = _DURATION.match(value.strip()).groups()  # type: ignore[union-attr]
        seconds = float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[unit]
    if seconds < 0 or (seconds == 0 and not zero) or seconds > 366 * 86400:
        raise UsageError("%s: %s = %r: expected a duration: seconds, or like \"90s\", \"15m\", \"2h\""
                         % (where, name, value))
    return seconds
