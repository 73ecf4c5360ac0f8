"""Logs in another wrapping (Android GNSS Logger, UTF-16, CR line ends) give the fixes of the
plain log; a log that gives none says why, on stderr and in the --json summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tcu.hal import iter_fixes
from tcu.hal.framing import Unwrapper, sniff
from tcu.hal.summary import summarize

DATA = Path(__file__).parent / "data"
WRAPPED = ["gnss-android.txt", "gnss-utf16-bom.log", "gnss-utf16-nobom.log", "gnss-cr.log"]


def tcu_fixes(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcu.tools.cli", "fixes", *args], capture_output=True, text=True,
                          timeout=60)


def plain_fixes() -> list[object]:
    """The excerpt's fixes as a plain CRLF NMEA log gives them."""
    return list(iter_fixes(str(DATA / "gnss-cr.log")))  # checked against UTF-16 and Android below


@pytest.mark.parametrize("name", WRAPPED)
def test_a_wrapped_log_gives_the_fixes_of_the_plain_one(name: str, tmp_path: Path) -> None:
    text = (DATA / "gnss-utf16-bom.log").read_bytes().decode("utf-16")
    plain = tmp_path / "plain.log"
    plain.write_text(text, "ascii")
    expected = list(iter_fixes(str(plain)))
    assert len(expected) == 48
    assert list(iter_fixes(str(DATA / name))) == expected
    result = tcu_fixes(str(DATA / name), "--json")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 48


def test_sniff_names_each_framing() -> None:
    assert [sniff((DATA / name).read_bytes()[:4096]) for name in WRAPPED] == [
        "android", "utf-16-le", "utf-16-be", "cr"]
    assert sniff((DATA / "gnss-undated.log").read_bytes()) == "nmea"


@pytest.mark.parametrize("name", WRAPPED)
def test_unwrapping_is_the_same_whatever_the_chunks(name: str) -> None:
    data = (DATA / name).read_bytes()
    kind = sniff(data[:4096])
    whole = Unwrapper(kind)
    at_once = whole.feed(data) + whole.flush()
    bytewise = Unwrapper(kind)
    pieces = b"".join(bytewise.feed(data[i:i + 7]) for i in range(0, len(data), 7)) + bytewise.flush()
    assert pieces == at_once and b"\nNMEA," not in at_once and at_once.count(b"$GNRMC") == 48


def test_an_undated_log_says_why_it_gives_no_fix() -> None:
    result = tcu_fixes(str(DATA / "gnss-undated.log"))
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr.strip() == "tcu fixes: 0 fixes from 49 sentences: 49 epochs without a date (no RMC or ZDA)"
    summary = json.loads(tcu_fixes(str(DATA / "gnss-undated.log"), "--json").stderr)["summary"]
    assert summary["fixes"] == 0 and summary["epochs_dropped"] == {"no_date": 49}


def test_binary_or_another_encoding_is_named(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 36)
    result = tcu_fixes(str(noise))
    assert result.stderr.strip() == "tcu fixes: no valid checksum in 9 KB: binary or another encoding?"
    latin = tmp_path / "gsv-only.log"
    latin.write_bytes(b"$GPGSV,1,1,01,02,05,307,*4B\r\n" * 10)
    assert "only GSV" in tcu_fixes(str(latin)).stderr


def test_a_receiver_without_fix_is_told_apart(tmp_path: Path) -> None:
    log = tmp_path / "void.log"
    log.write_bytes(b"$GPRMC,000941.00,V,,,,,,,100117,,,N*77\r\n$GPRMC,000942.00,V,,,,,,,100117,,,N*74\r\n")
    stream = iter_fixes(str(log))
    assert list(stream) == []
    assert summarize(stream)["reason"] == "0 fixes from 2 sentences: 2 epochs where the receiver reported no fix"
