"""The disclosure audit log: every located uplink on the record, no coordinates, and any
deleted, edited or reordered record detected by `tcu audit verify`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tcu.emulator.audit import GENESIS, RETENTION_S, AuditLog, verify
from tcu.firmware.errors import SourceError
from tcu.protocol import messages

T = 1_778_745_600


def make_log(path: Path, count: int = 6) -> AuditLog:
    log = AuditLog(path)
    for i in range(count):
        payload = messages.encode_report(i + 2, 1 + i // 3, 1, i, 481374300 + i, 115754900, 50, 22)
        log.append(T + i, 1, i + 2, 1 + i // 3, "crash_notification", payload)
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def tcu_audit(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcu.tools.cli", "audit", "verify", str(path)],
                          capture_output=True, text=True, timeout=30)


def test_an_intact_log_verifies_and_holds_no_coordinates(tmp_path: Path) -> None:
    make_log(tmp_path / "audit.log")
    result = tcu_audit(tmp_path / "audit.log")
    assert result.returncode == 0 and "6 records, chain intact" in result.stdout
    text = (tmp_path / "audit.log").read_text()
    assert "48137" not in text and "lat" not in text
    assert AuditLog(tmp_path / "audit.log").next_n == 7  # reopens where it left off


@pytest.mark.parametrize("damage, expected", [
    ("delete", "deleted or reordered"),
    ("edit", "edited"),
    ("reorder", "deleted or reordered"),
    ("truncate", "cut off the end"),
])
def test_tampering_is_detected(tmp_path: Path, damage: str, expected: str) -> None:
    path = tmp_path / "audit.log"
    make_log(path)
    text = lines(path)
    if damage == "delete":
        del text[3]
    elif damage == "edit":
        record = json.loads(text[2])
        record["purpose"] = "theft_tracking"  # hide what a disclosure was for
        text[2] = json.dumps(record, separators=(",", ":"))
    elif damage == "reorder":
        text[2], text[3] = text[3], text[2]
    else:
        text = text[:-2]
    path.write_text("\n".join(text) + "\n")
    verdict = verify(path)
    assert not verdict.intact and any(expected in p for p in verdict.problems), verdict.problems
    result = tcu_audit(path)
    assert result.returncode == 1 and "BROKEN" in result.stdout and "Traceback" not in result.stderr


def test_retention_prunes_ended_sessions_and_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = make_log(path)  # session 1: records 1-3, session 2: records 4-6
    assert log.prune(T + 100, {(1, 1): T + 10}) == 0  # ended, retention not over yet
    assert log.prune(T + 10 + RETENTION_S + 1, {(1, 1): T + 10}) == 3  # session 2 still running
    assert verify(path).intact and verify(path).records == 3
    log.append(T + 99, 1, 20, 2, "crash_notification", b"x")
    assert verify(path).intact
    first = json.loads(lines(path)[1])
    assert first["n"] == 4


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    result = tcu_audit(tmp_path / "nope.log")
    assert result.returncode == 2 and "cannot read the audit log" in result.stderr
    (tmp_path / "foreign.log").write_text('{"hello": 1}\n')
    result = tcu_audit(tmp_path / "foreign.log")
    assert result.returncode == 2 and "not a tcu audit log" in result.stderr



def test_a_mistyped_record_or_head_is_named_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 2)
    text = lines(path)
    record = json.loads(text[1])
    record["n"] = "one"  # a record number that is not a number
    text[1] = json.dumps(record)
    path.write_text("\n".join(text) + "\n")
    (tmp_path / "audit.log.head").write_text("[]\n")  # valid JSON, not a head
    result = tcu_audit(path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "record 1 (line 2): malformed" in result.stdout and "head file" in result.stdout


def test_the_unit_refuses_to_append_to_a_damaged_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text('{"audit": 1, "anchor": "%s", "first": 1}\n{"n": 1}\n' % GENESIS)
    with pytest.raises(SourceError, match="damaged"):
        AuditLog(path)
