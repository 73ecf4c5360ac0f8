"""Issue 18's README and usage drift, as a new user on a fresh clone meets it: every install
line works from a clone (tcu-emulator is not on a package index), every command the README names
exists, and `tcu trigger`'s usage line shows every option it accepts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tcu.tools.extras import extra_hint

REPO = Path(__file__).resolve().parents[1]
TCU = [sys.executable, "-m", "tcu.tools.cli"]


def sources() -> list[Path]:
    return [REPO / "README.md", *sorted(p for d in ("tools", "emulator", "hal") for p in (REPO / d).glob("*.py"))]


def test_no_install_line_names_a_package_index_tcu_emulator() -> None:
    for path in sources():
        text = path.read_text()
        assert "install 'tcu-emulator[" not in text and "install tcu-emulator" not in text, path


def test_the_extra_hint_from_a_clone_names_the_clone_and_this_pip() -> None:
    hint = extra_hint("plot", "matplotlib")
    assert hint == "%s -m pip install -e '%s[plot]' (the plot extra)" % (sys.executable, REPO)


def test_the_postgresql_hint_without_psycopg_is_the_clones() -> None:
    code = ("import sys; sys.modules['psycopg'] = None; from tcu.tools.cli import main; "
            "sys.exit(main(['backend', 'sessions', '--store', 'postgresql://nobody@127.0.0.1:1/x']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "-m pip install -e '%s[postgresql]'" % REPO in result.stderr, result.stderr


def test_the_trigger_usage_line_shows_every_option_it_accepts() -> None:
    from tcu.tools.cli import build_parser

    usage = subprocess.run([*TCU, "trigger", "--help"], capture_output=True, text=True, timeout=30).stdout
    line = usage.split("\n\n")[0]
    parser = build_parser("trigger")
    sub = next(a for a in parser._actions if a.dest == "command").choices["trigger"]  # type: ignore[attr-defined]
    accepted = {o for a in sub._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    shown = set(re.findall(r"--[a-z-]+", line))
    assert shown == accepted, (line, accepted)


def test_every_command_the_readme_runs_exists() -> None:
    """`tcu WORD` (and `tcu backend WORD`) in the README's code: each a real command."""
    text = (REPO / "README.md").read_text()
    help_text = subprocess.run([*TCU, "--help"], capture_output=True, text=True, timeout=30).stdout
    backend = subprocess.run([*TCU, "backend", "--help"], capture_output=True, text=True, timeout=30).stdout
    for word in set(re.findall(r"^tcu ([a-z][a-z-]+)", text, re.M)):
        assert re.search(r"^\s+%s\b" % word, help_text, re.M), word
    for word in set(re.findall(r"^tcu backend ([a-z][a-z-]+)", text, re.M)):
        assert word in backend, word
    assert "configure" not in backend


def test_a_verb_alone_on_an_input_line_asks_for_the_trigger() -> None:
    from tcu.emulator.inputs import parse_command
    from tcu.firmware.errors import UsageError

    for verb in ("clear", "cancel", "trigger"):
        with pytest.raises(UsageError) as err:
            parse_command(verb)
        assert "'%s' needs the trigger to %s: %s KIND (KIND: assist, crash" % (verb, verb, verb) in str(err.value)
        assert "unknown trigger" not in str(err.value)
    assert parse_command("clear theft") == {"op": "clear", "kind": "theft"}


def test_a_path_is_named_once_in_an_error_line(tmp_path: Path) -> None:
    from tcu.emulator.live import CounterStore
    from tcu.firmware.errors import TcuError
    from tcu.hal.indicator import SysfsLed

    counter = tmp_path / "counter"
    counter.mkdir()  # unreadable as a file: IsADirectoryError, whose str() names the path again
    with pytest.raises(TcuError) as err:
        CounterStore(counter).load()
    assert str(err.value).count(str(counter)) == 1 and "Errno" not in str(err.value), err.value
    led = SysfsLed.__new__(SysfsLed)  # a LED whose brightness file the unit cannot write
    led.path = tmp_path
    with pytest.raises(TcuError) as err:
        led.set(True)
    assert str(err.value).count(str(tmp_path)) == 1 and "Errno" not in str(err.value), err.value
