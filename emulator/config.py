"""`tcu run`'s configuration: a TOML file (`--config FILE` or TCU_CONFIG), with the options
given on the command line over it, checked in one place.

Every setting has one default (the Config field), one key in the file and one option; an
option the command line did not give is None and leaves the file's value (or the default)
in place. Every invalid value is a UsageError naming the file and the key, e.g.
"config tcu.toml: services.crash.bound_s = 900: from 1 to 600 s: ...". See deploy/tcu.toml.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tcu.emulator.credentials import Credentials, credentials
from tcu.firmware.errors import UsageError
from tcu.firmware.services import Service, default_services, narrow_services

ENV = "TCU_CONFIG"


@dataclass(frozen=True)
class Config:
    """What `tcu run` runs with. baud None: detected. control None: STATE/control.sock."""

    unit: str = "unit-0001"
    state: str = "tcu-state"
    control: str | None = None
    indicator: str = "none"
    inputs: tuple[str, ...] = ()
    gps: str = "/dev/ttyACM0"
    baud: int | None = None
    broker: str = "mqtt://127.0.0.1:1883"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never shown
    password_file: str | None = None
    backend_key: str | None = None
    backend_hmac_key: str | None = None
    e2e_key: str | None = None
    audit_retention_h: float = 13.0
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # overrides by service name
    vehicle: Mapping[str, Any] = field(default_factory=dict)  # [vehicle]: the eCall MSD's vehicle data
    path: str | None = None  # the file it was read from

    def credentials(self) -> Credentials | None:
        """The broker user name and password (these settings over the URL's); UsageError for a
        password file others can read."""
        from tcu.emulator.uplink import parse_broker_url

        auth = credentials(username=self.username, password=self.password, password_file=self.password_file)
        return parse_broker_url(self.broker, auth).auth

    @property
    def control_path(self) -> str:
        return self.control or os.path.join(self.state, "control.sock")

    def vehicle_data(self) -> Any:
        """The [vehicle] table as the MSD encoder's Vehicle (emulator/msd.py)."""
        from tcu.emulator.msd import vehicle_of

        return vehicle_of(dict(self.vehicle), "vehicle")

    def service_table(self) -> dict[int, Service]:
        return narrow_services(default_services(), {k: dict(v) for k, v in self.services.items()})


# Checks: (value, name) -> the value to keep; name is "--option" or "config FILE: section.key".
Check = Callable[[Any, str], Any]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError("%s = %r: expected a non-empty string" % (name, value))
    return value


def _unit_id(value: Any, name: str) -> str:
    if "/" in _text(value, name) or "+" in value or "#" in value:
        raise UsageError("%s %r: a unit id cannot contain '/', '+' or '#' (it is a topic level)" % (name, value))
    return str(value)


def _baud(value: Any, name: str) -> int | None:
    if value == "auto":
        return None
    if type(value) is not int or value <= 0:
        raise UsageError("%s = %r: expected a baud rate (a positive whole number) or \"auto\"" % (name, value))
    return int(value)


def _broker(value: Any, name: str) -> str:
    from tcu.emulator.uplink import parse_broker_url, redact_url  # the parser the uplink connects with

    try:
        parse_broker_url(_text(value, name))
    except (UsageError, ValueError):  # ValueError: urlsplit's, e.g. "Invalid IPv6 URL"
        raise UsageError("%s = %r: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], PORT from 1 to 65535 "
                         "(a user name and password: mqtt://USER:PASSWORD@HOST)" % (name, redact_url(value))) from None
    return str(value)


def _indicator(value: Any, name: str) -> str:
    kind, _, arg = _text(value, name).partition(":")
    if not ((kind == "none" and not arg) or (kind in ("file", "sysfs-led") and arg)
            or (kind == "gpio" and arg.isdigit())):
        raise UsageError("%s %r: expected none, file:PATH, sysfs-led:NAME or gpio:PIN" % (name, value))
    return str(value)


def _inputs(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise UsageError("%s = %r: expected a list of input specs (strings)" % (name, value))
    return tuple(value)


def _hours(value: Any, name: str) -> float:
    if type(value) not in (int, float) or not 0 < value <= 24 * 365:
        raise UsageError("%s %s: hours from 0 to a year" % (name, value))
    return float(value)


def _file(value: Any, name: str) -> str:
    """A file that must exist when it comes from the config file (an option's file is
    checked where it is read, with the message of that reader)."""
    path = _text(value, name)
    if name.startswith("config ") and not os.path.isfile(path):
        raise UsageError("%s = %r: no such file" % (name, path))
    return path


@dataclass(frozen=True)
class Setting:
    attr: str  # the Config field
    key: str  # section.key in the file
    option: str  # on the command line
    check: Check

    @property
    def dest(self) -> str:
        return self.option[2:].replace("-", "_")


SETTINGS = (
    Setting("unit", "unit.id", "--unit", _unit_id),
    Setting("state", "unit.state", "--state", _text),
    Setting("control", "unit.control", "--control", _text),
    Setting("indicator", "unit.indicator", "--indicator", _indicator),
    Setting("inputs", "unit.inputs", "--input", _inputs),
    Setting("gps", "gps.source", "--gps", _text),
    Setting("baud", "gps.baud", "--baud", _baud),
    Setting("broker", "broker.url", "--broker", _broker),
    Setting("tls_ca", "broker.tls_ca", "--tls-ca", _file),
    Setting("tls_cert", "broker.tls_cert", "--tls-cert", _file),
    Setting("tls_key", "broker.tls_key", "--tls-key", _file),
    Setting("username", "broker.username", "--username", _text),
    Setting("password", "broker.password", "--password", _text),  # the file only: no such option
    Setting("password_file", "broker.password_file", "--password-file", _file),
    Setting("backend_key", "keys.backend", "--backend-key", _file),
    Setting("backend_hmac_key", "keys.backend_hmac", "--backend-hmac-key", _file),
    Setting("e2e_key", "keys.e2e", "--e2e-key", _file),
    Setting("audit_retention_h", "audit.retention_hours", "--audit-retention", _hours),
)
SECTIONS: dict[str, list[str]] = {}
for _setting in SETTINGS:
    SECTIONS.setdefault(_setting.key.split(".")[0], []).append(_setting.key.split(".")[1])
SECTIONS["services"] = []  # one table per service, checked by narrow_services
SECTIONS["vehicle"] = ["vin", "type", "propulsion", "passengers"]  # checked by emulator/msd.py


def read_file(path: str) -> dict[str, Any]:
    """The settings a config file sets, checked: {Config field: value}."""
    where = "config %s" % path
    try:
        with open(path, "rb") as file:
            doc = tomllib.load(file)
    except OSError as err:
        raise UsageError("%s: cannot read it: %s" % (where, err.strerror or err)) from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError("%s: not valid TOML: %s" % (where, err)) from None
    for section, table in doc.items():
        if section not in SECTIONS:
            raise UsageError("%s: unknown section [%s]: expected %s" % (where, section, _names(SECTIONS)))
        if not isinstance(table, dict):
            raise UsageError("%s: %s must be a table ([%s])" % (where, section, section))
        if section != "services":
            for key in table:
                if key not in SECTIONS[section]:
                    raise UsageError("%s: %s.%s: unknown key: expected one of %s in [%s]"
                                     % (where, section, key, _names(SECTIONS[section]), section))
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        section, key = setting.key.split(".")
        if key in doc.get(section, {}):
            values[setting.attr] = setting.check(doc[section][key], "%s: %s" % (where, setting.key))
    if "services" in doc:
        narrow_services(default_services(), doc["services"], "%s: services" % where)
        values["services"] = doc["services"]
    if "vehicle" in doc:
        from tcu.emulator.msd import vehicle_of

        vehicle_of(doc["vehicle"], "%s: vehicle" % where)
        values["vehicle"] = doc["vehicle"]
    return values


def _names(items: Any) -> str:
    return ", ".join(sorted(items))


def resolve(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Config:
    """The config file (args.config, else $TCU_CONFIG, else none), then every option the
    command line gave (not None) over it, then the defaults for the rest."""
    path = getattr(args, "config", None) or environ.get(ENV) or None
    values = read_file(path) if path else {}
    for setting in SETTINGS:
        given = getattr(args, setting.dest, None)
        if given is not None:
            values[setting.attr] = setting.check(given, setting.option)
    return Config(path=os.path.abspath(path) if path else None, **values)


# What a reload can change in a running unit; the rest needs a restart.
LIVE = ("indicator", "inputs", "gps", "baud", "backend_key", "backend_hmac_key", "e2e_key",
        "audit_retention_h")
RESTART = ("unit", "state", "control", "broker", "tls_ca", "tls_cert", "tls_key", "username", "password",
           "password_file")
KEY_OF = {setting.attr: setting.key for setting in SETTINGS}


def changes(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """(what differs and can change live, what differs and needs a restart), as key names
    ("services.crash", "unit.indicator", "broker.url", ...)."""
    live = [a for a in LIVE if getattr(old, a) != getattr(new, a)]
    live += ["services.%s" % name for name in sorted(set(old.services) | set(new.services))
             if old.services.get(name) != new.services.get(name)]
    restart = [a for a in RESTART if getattr(old, a) != getattr(new, a)]
    return live, restart


def key_of(attr: str) -> str:
    return KEY_OF.get(attr, attr)
