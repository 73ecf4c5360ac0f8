"""`tcu run --config FILE`: the TOML config, its errors, the command line over it, the
narrowing rule for services, and reloading a running unit (SIGHUP, `tcu reload`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import stop, tcu, wait_until
from hypothesis import given
from hypothesis import strategies as st
from test_daemon import LiveGps

from tcu.emulator.config import Config, changes, read_file, resolve
from tcu.firmware import services as sv
from tcu.firmware.errors import UsageError
from tcu.tools.backend import Backend
from tcu.tools.cli import build_parser

UNIT = "unit-config-1"


def parse(*argv: str) -> Config:
    return resolve(build_parser("run").parse_args(["run", *argv]), environ={})


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_without_a_file_the_defaults_are_todays_tcu_run_defaults() -> None:
    config = parse()
    assert config == Config()
    assert (config.unit, config.gps, config.baud, config.broker) == ("unit-0001", "/dev/ttyACM0", None,
                                                                     "mqtt://127.0.0.1:1883")
    assert config.control_path == os.path.join("tcu-state", "control.sock") and config.audit_retention_h == 13.0
    assert config.service_table()[sv.CRASH].max_samples == 320


def test_every_setting_of_a_file(tmp_path: Path) -> None:
    key = write(tmp_path / "backend.pub", "x")
    path = write(tmp_path / "tcu.toml", f"""
[unit]
id = "unit-9"
state = "/var/lib/tcu"
control = "/run/tcu.sock"
indicator = "gpio:17"
inputs = ["gpio:5=crash", "gpio:6=theft"]
[gps]
source = "/dev/ttyUSB0"
baud = 9600
[broker]
url = "mqtts://broker.example:8883"
tls_ca = "{key}"
[keys]
backend = "{key}"
[audit]
retention_hours = 2.5
[services.crash]
period_s = 4
max_samples = 1
fields = ["position"]
""")
    config = parse("--config", path)
    assert (config.unit, config.state, config.control_path, config.indicator) == (
        "unit-9", "/var/lib/tcu", "/run/tcu.sock", "gpio:17")
    assert config.inputs == ("gpio:5=crash", "gpio:6=theft") and (config.gps, config.baud) == ("/dev/ttyUSB0", 9600)
    assert (config.broker, config.tls_ca, config.backend_key, config.audit_retention_h) == (
        "mqtts://broker.example:8883", key, key, 2.5)
    crash = config.service_table()[sv.CRASH]
    assert (crash.period_s, crash.bound_s, crash.max_samples, crash.fields) == (4, 600, 1, sv.F_POSITION)
    assert config.path == path


def test_the_command_line_overrides_only_the_options_it_gives(tmp_path: Path) -> None:
    path = write(tmp_path / "tcu.toml", '[unit]\nid = "from-file"\nstate = "file-state"\ninputs = ["a"]\n'
                                        '[gps]\nbaud = 9600\nsource = "/dev/ttyS0"\n[audit]\nretention_hours = 5\n')
    config = parse("--config", path, "--unit", "from-cli", "--baud", "auto", "--input", "b", "--input", "c")
    assert (config.unit, config.baud, config.inputs) == ("from-cli", None, ("b", "c"))  # given: the option wins
    assert (config.state, config.gps, config.audit_retention_h) == ("file-state", "/dev/ttyS0", 5.0)  # not given
    assert parse("--config", path, "--audit-retention", "1").audit_retention_h == 1.0


def test_the_config_file_can_come_from_tcu_config(tmp_path: Path) -> None:
    path = write(tmp_path / "tcu.toml", '[unit]\nid = "from-env"\n')
    args = build_parser("run").parse_args(["run"])
    assert resolve(args, environ={"TCU_CONFIG": path}).unit == "from-env"
    args = build_parser("run").parse_args(["run", "--config", write(tmp_path / "b.toml", "")])
    assert resolve(args, environ={"TCU_CONFIG": path}).unit == "unit-0001"  # --config wins


@pytest.mark.parametrize("text, message", [
    ('[unit]\nid = "a"\nstate = \n', "not valid TOML: Invalid value (at line 3, column 9)"),
    ('[gsp]\nsource = "x"\n', "unknown section [gsp]: expected audit, broker, gps, keys, modem, services, unit"),
    ('[unit]\nidd = "x"\n', "unit.idd: unknown key: expected one of control, id, indicator, inputs, state"),
    ('unit = 5\n', "unit must be a table ([unit])"),
    ('[gps]\nbaud = "fast"\n', "gps.baud = 'fast': expected a baud rate (a positive whole number) or \"auto\""),
    ('[gps]\nbaud = 0\n', "gps.baud = 0: expected a baud rate"),
    ('[gps]\nsource = 5\n', "gps.source = 5: expected a non-empty string"),
    ('[unit]\nid = "a/b"\n', "unit.id 'a/b': a unit id cannot contain '/'"),
    ('[unit]\nindicator = "led"\n', "unit.indicator 'led': expected none, file:PATH, sysfs-led:NAME or gpio:PIN"),
    ('[unit]\ninputs = "gpio:5=crash"\n', "unit.inputs = 'gpio:5=crash': expected a list of input specs"),
    ('[broker]\nurl = "http://x"\n', "broker.url = 'http://x': expected mqtt://HOST[:PORT]"),
    ('[broker]\nurl = "mqtt://[::1"\n', "broker.url = 'mqtt://[::1': expected mqtt://HOST[:PORT]"),
    ('[broker]\nurl = "mqtt://h:99999"\n', "broker.url = 'mqtt://h:99999': expected mqtt://HOST[:PORT] or "
                                           "mqtts://HOST[:PORT], PORT from 1 to 65535"),
    ('[audit]\nretention_hours = 0\n', "audit.retention_hours 0: hours from 0 to a year"),
    ('[audit]\nretention_hours = 9000\n', "audit.retention_hours 9000: hours from 0 to a year"),
    ('[audit]\nretention_hours = true\n', "audit.retention_hours True: hours from 0 to a year"),
    ('[keys]\nbackend = "/nonexistent/backend.pub"\n', "keys.backend = '/nonexistent/backend.pub': no such file"),
    ('[broker]\ntls_ca = "/nonexistent/ca.crt"\n', "broker.tls_ca = '/nonexistent/ca.crt': no such file"),
    ('[services.airbag]\nbound_s = 1\n', "services.airbag: unknown service: expected one of assist, crash, lawful"),
    ('[services.crash]\nbound = 1\n', "services.crash.bound: unknown field: expected period_s, bound_s"),
    ('[services.crash]\nbound_s = 900\n', "services.crash.bound_s = 900: from 1 to 600 s: an override may only "
                                          "shorten a session"),
    ('[services.crash]\nperiod_s = 1\n', "services.crash.period_s = 1: from 2 to 600 s"),
    ('[services.theft]\nmax_samples = 2000\n', "services.theft.max_samples = 2000: from 1 to 1500"),
    ('[services.sos]\nfields = ["position", "quality"]\n', "'quality' is not sent by this service"),
    ('[services.crash]\nfields = ["motion"]\n', '"position" is required'),
    ('[services.crash]\nmax_samples = 1.5\n', "services.crash.max_samples = 1.5: expected a whole number"),
    ('[services]\ncrash = 3\n', "services.crash: expected a table"),
])
def test_every_invalid_value_is_named_with_its_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "tcu.toml", text)
    with pytest.raises(UsageError) as err:
        read_file(path)
    assert str(err.value).startswith("config %s: " % path) and message in str(err.value)


def test_an_unreadable_file_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="config .*none.toml: cannot read it: No such file"):
        parse("--config", str(tmp_path / "none.toml"))
    with pytest.raises(UsageError, match="--audit-retention 0.0: hours from 0 to a year"):
        parse("--audit-retention", "0")
    with pytest.raises(UsageError, match="--unit 'a#b': a unit id cannot contain"):
        parse("--unit", "a#b")


def test_tcu_run_with_a_bad_config_says_one_line_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path / "tcu.toml", "[services.crash]\nbound_s = 601\n")
    result = tcu("run", "--config", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "tcu run: error: config %s: services.crash.bound_s = 601: from 1 to 600 s: an override may only shorten a "
        "session, never disclose location for longer than its purpose allows" % path]


def test_changes_split_what_a_reload_applies_from_what_needs_a_restart() -> None:
    old = Config()
    new = Config(unit="other", broker="mqtt://10.0.0.1", indicator="gpio:4", gps="/dev/ttyUSB0",
                 audit_retention_h=2.0, services={"crash": {"max_samples": 1}})
    live, restart = changes(old, new)
    assert live == ["indicator", "gps", "audit_retention_h", "services.crash"]
    assert restart == ["unit", "broker"]
    assert changes(new, new) == ([], [])


def near(n: int) -> st.SearchStrategy[int]:
    """Numbers at and around a built-in term (where widening starts), and anywhere."""
    return st.one_of(st.integers(n - 2, n + 2), st.integers(-5, 2 * n + 5))


@given(st.data())
def test_an_accepted_override_never_widens_any_service(data: st.DataObject) -> None:
    overrides = {}
    for name in data.draw(st.lists(st.sampled_from(sorted(sv.SERVICES_BY_NAME)), unique=True, max_size=3)):
        was = sv.default_services()[sv.SERVICES_BY_NAME[name]]
        overrides[name] = data.draw(st.fixed_dictionaries({}, optional={
            "period_s": near(was.period_s), "bound_s": near(was.bound_s), "max_samples": near(was.max_samples),
            "fields": st.lists(st.sampled_from(sorted(sv.FIELDS_BY_NAME)), min_size=1, max_size=4)}))
    base = sv.default_services()
    try:
        table = sv.narrow_services(base, overrides)
    except UsageError:
        return
    assert set(table) == set(base)
    for code, service in table.items():
        was = base[code]
        assert service.period_s >= was.period_s and service.bound_s <= was.bound_s
        assert 1 <= service.max_samples <= was.max_samples
        assert service.fields & sv.F_POSITION and service.fields & ~was.fields == 0
        assert (service.trigger, service.purpose, service.priority, service.mode, service.occupant_can_cancel) == (
            was.trigger, was.purpose, was.priority, was.mode, was.occupant_can_cancel)


CONFIG = """
[unit]
id = "{unit}"
state = "{state}"
control = "{control}"
indicator = "file:{led}"
[gps]
source = "{gps}"
baud = 9600
[broker]
url = "{broker}"
{services}
"""


class RunningUnit:
    """`tcu run --config FILE` as a subprocess; stderr collected to a file (never a full pipe)."""

    def __init__(self, tmp_path: Path, config: str) -> None:
        self.control = str(tmp_path / "control.sock")
        self.log = tmp_path / "run.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", "--config", config],
                                         stdout=subprocess.DEVNULL, stderr=log, text=True)
        assert wait_until(lambda: os.path.exists(self.control)), self.log.read_text()

    def status(self) -> dict:
        return json.loads(tcu("status", "--json", "--control", self.control).stdout)

    def stop(self) -> int:
        return stop(self.proc)


def test_a_reload_narrows_new_sessions_keeps_active_ones_and_survives_a_bad_edit(mosquitto, tmp_path: Path) -> None:
    gps, gps2 = LiveGps(), LiveGps()
    path = tmp_path / "tcu.toml"
    fill = dict(unit=UNIT, state=tmp_path / "state", control=tmp_path / "control.sock", led=tmp_path / "led",
                gps=gps.path, broker=mosquitto.url)
    path.write_text(CONFIG.format(**fill, services=""))
    backend = Backend(mosquitto.url, client_id="config-backend-%d" % time.monotonic_ns(), persistent=False)
    unit = RunningUnit(tmp_path, str(path))
    try:
        assert wait_until(lambda: unit.status()["gps"]["alive"])
        assert unit.status()["config"] == str(path)
        assert unit.status()["services"]["crash"]["max_samples"] == 320
        assert tcu("trigger", "sos", "--control", unit.control).returncode == 0  # runs on the built-in terms

        # Narrow crash and sos, move the GPS, rename the unit (that one needs a restart): `tcu reload`.
        fill.update(gps=gps2.path, led=tmp_path / "led2")
        path.write_text(CONFIG.format(**fill, services='[services.crash]\nmax_samples = 1\nfields = ["position"]\n'
                                                       '[services.sos]\nmax_samples = 1\n').replace(UNIT, "renamed"))
        result = tcu("reload", "--control", unit.control)
        assert result.returncode == 0, result.stderr
        assert "applied: unit.indicator, gps.source, services.crash, services.sos" in result.stdout
        assert "needs a restart (running values kept): unit.id" in result.stdout
        assert "active sessions keep the terms they started with" in result.stdout
        status = unit.status()
        assert status["unit"] == UNIT and status["services"]["crash"] == {
            "period_s": 2, "bound_s": 600, "max_samples": 1, "fields": ["position"]}
        assert (tmp_path / "led2").read_text() == "1\n" and (tmp_path / "led").read_text() == "0\n"
        assert wait_until(lambda: unit.status()["gps"]["source"] == gps2.path and unit.status()["gps"]["alive"])
        # The active sos session keeps its terms: more than the one sample the new ones allow.
        assert wait_until(lambda: [s["samples"] for s in unit.status()["sessions"]][0] >= 2, timeout=15)
        assert tcu("trigger", "cancel", "sos", "--control", unit.control).returncode == 0

        # A new crash session follows the new terms: one position-only report, then it ends.
        assert tcu("trigger", "crash", "--control", unit.control).returncode == 0
        assert wait_until(lambda: unit.status()["state"] == "dormant")
        crash = [r for r in backend.records if r.get("purpose") == "crash_notification"]
        assert wait_until(lambda: any(r["type"] == "session_end" for r in backend.records
                                      if r.get("reason") == "sample_bound"))
        reports = [r for r in backend.records if r["type"] == "report" and r["purpose"] == "crash_notification"]
        assert len(reports) == 1 and not {"speed", "course", "alt", "sats", "mode"} & set(reports[0]), crash

        # A bad edit, by SIGHUP: refused, the unit keeps running on the config it had.
        path.write_text(path.read_text().replace("max_samples = 1\nfields", "max_samples = 999\nfields"))
        os.kill(unit.proc.pid, signal.SIGHUP)
        assert wait_until(lambda: "reload refused" in unit.log.read_text())
        assert "services.crash.max_samples = 999: from 1 to 320" in unit.log.read_text()
        assert unit.proc.poll() is None and unit.status()["services"]["crash"]["max_samples"] == 1
        refused = tcu("reload", "--control", unit.control)
        assert refused.returncode == 1 and "the running config is unchanged" in refused.stderr

        # A good edit by SIGHUP: applied.
        path.write_text(path.read_text().replace("max_samples = 999", "max_samples = 3"))
        os.kill(unit.proc.pid, signal.SIGHUP)
        assert wait_until(lambda: unit.status()["services"]["crash"]["max_samples"] == 3)
        assert unit.stop() == 0  # SIGTERM still stops it cleanly after reloads
        log = unit.log.read_text()
        assert "reloaded %s: applied services.crash" % path in log and log.rstrip().endswith("stopped cleanly")
        assert (tmp_path / "led2").read_text() == "0\n" and not os.path.exists(unit.control)
    finally:
        unit.stop()
        backend.close()
        gps.close()
        gps2.close()


def test_reload_without_a_config_file_is_refused_and_sigterm_exits_0(mosquitto, tmp_path: Path) -> None:
    gps = LiveGps()
    control = str(tmp_path / "control.sock")
    proc = subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "run", "--broker", mosquitto.url, "--gps",
                             gps.path, "--baud", "9600", "--unit", UNIT, "--state", str(tmp_path / "state"),
                             "--control", control], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: os.path.exists(control))
        refused = tcu("reload", "--control", control)
        assert refused.returncode == 1 and "runs without a config file" in refused.stderr
        proc.send_signal(signal.SIGHUP)  # no config: refused, and the unit does not die of it
        assert tcu("status", "--control", control).returncode == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "stopped cleanly" in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        gps.close()


@given(st.data())
def test_every_narrowing_is_accepted_as_given(data: st.DataObject) -> None:
    overrides = {}
    for name, code in sv.SERVICES_BY_NAME.items():
        was = sv.default_services()[code]
        bound = data.draw(st.integers(max(1, was.period_s), was.bound_s))
        others = [f for f in sv.field_names(was.fields) if f != "position"]
        overrides[name] = {"bound_s": bound, "period_s": data.draw(st.integers(was.period_s, bound)),
                           "max_samples": data.draw(st.integers(1, was.max_samples)),
                           "fields": ["position"] + data.draw(st.lists(st.sampled_from(others), unique=True)
                                                              if others else st.just([]))}
    table = sv.narrow_services(sv.default_services(), overrides)
    for name, code in sv.SERVICES_BY_NAME.items():
        terms = sv.service_terms(table[code])
        assert terms == {**overrides[name], "fields": sv.field_names(table[code].fields)}
        assert sorted(terms["fields"]) == sorted(overrides[name]["fields"])  # type: ignore[arg-type]


def test_the_documented_example_loads() -> None:
    config = parse("--config", str(Path(__file__).resolve().parents[1] / "deploy" / "tcu.toml"))
    assert (config.unit, config.state, config.baud, config.inputs) == ("unit-0001", "/var/lib/tcu", None, ())
    assert sv.service_terms(config.service_table()[sv.CRASH]) == sv.service_terms(sv.default_services()[sv.CRASH])


def test_trigger_inputs_from_the_config_and_a_reload_that_swaps_them(mosquitto, tmp_path: Path) -> None:
    gps = LiveGps()
    path, fifo_a, fifo_b = tmp_path / "tcu.toml", tmp_path / "a.fifo", tmp_path / "b.fifo"
    text = CONFIG.format(unit=UNIT, state=tmp_path / "state", control=tmp_path / "control.sock",
                         led=tmp_path / "led", gps=gps.path, broker=mosquitto.url, services="")
    path.write_text(text.replace("[gps]", 'inputs = ["fifo:%s"]\n[gps]' % fifo_a))
    unit = RunningUnit(tmp_path, str(path))
    try:
        assert wait_until(fifo_a.exists)  # the inputs open just after the control socket
        fifo_a.write_text("trigger theft\n")
        assert wait_until(lambda: [s["trigger"] for s in unit.status()["sessions"]] == ["theft"])
        path.write_text(text.replace("[gps]", 'inputs = ["fifo:%s"]\n[gps]' % fifo_b))
        os.kill(unit.proc.pid, signal.SIGHUP)
        # the summary is logged once the whole reload is done, which can be after fifo_b
        # already took a command: wait for it, not for the pipes
        assert wait_until(lambda: "applied unit.inputs;" in unit.log.read_text()), unit.log.read_text()
        assert fifo_b.exists() and not fifo_a.exists()
        fifo_b.write_text("clear theft\n")
        assert wait_until(lambda: unit.status()["state"] == "dormant")
        assert unit.stop() == 0 and not fifo_b.exists()
    finally:
        unit.stop()
        gps.close()
