"""The unit's disclosure audit log: one record per located uplink, never a coordinate.

Each record holds when, which session and purpose, which uplink (boot, seq) and a SHA-256
digest of the exact payload sent, plus the hash of the previous record: editing, deleting
or reordering any record breaks the chain. A head file beside the log keeps the last hash
and the count, so cutting records off the end shows too. Records are kept until the
retention (default 13 h, as for eCall's activity log) has passed after their session ended;
pruning moves the chain's anchor to the last pruned record.

File: one JSON object per line; the first line is the header {"audit": 1, "anchor", "first"}.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcu.firmware.errors import SourceError

RETENTION_S = 13 * 3600
GENESIS = "0" * 64
FIELDS = ("n", "time", "boot", "seq", "session", "purpose", "digest", "prev")


def record_hash(record: dict[str, Any]) -> str:
    marks = ["test"] if record.get("test") is True else []  # a test call's mark is chained too
    canonical = json.dumps([record[k] for k in FIELDS] + marks, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Verdict:
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


class AuditLog:
    """Append-only, fsynced; `prune(now, ended)` applies the retention."""

    def __init__(self, path: str | os.PathLike[str], retention_s: int = RETENTION_S) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.retention_s = retention_s
        if not self.path.exists():
            self._rewrite({"audit": 1, "anchor": GENESIS, "first": 1}, [])
        header, records = _read(self.path)
        try:
            self.anchor, self.first = str(header["anchor"]), int(header["first"])
            self.last = str(records[-1]["hash"]) if records else self.anchor
            self.next_n = int(records[-1]["n"]) + 1 if records else self.first
        except (KeyError, TypeError, ValueError):
            raise SourceError("the audit log %s is damaged: see `tcu audit verify %s`" % (path, path)) from None
        self.records = records

    def append(self, time_s: int, boot: int, seq: int, session: int, purpose: str, payload: bytes,
               test: bool = False) -> dict[str, Any]:
        """test: the session is a test call (tcu trigger crash|sos --test), marked in the record."""
        record: dict[str, Any] = {"n": self.next_n, "time": time_s, "boot": boot, "seq": seq, "session": session,
                                     "purpose": purpose, "digest": hashlib.sha256(payload).hexdigest(),
                                     "prev": self.last}
        if test:
            record["test"] = True
        record["hash"] = record_hash(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)
        self.last, self.next_n = str(record["hash"]), self.next_n + 1
        self._write_head()
        return record

    def prune(self, now_s: int, ended: dict[tuple[int, int], int]) -> int:
        """Drop the oldest records whose (boot, session) ended more than the retention ago;
        returns how many. A record of a session still running (not in ended) stops the cut."""
        keep_from = 0
        for record in self.records:
            end = ended.get((int(record["boot"]), int(record["session"])))
            if end is None or end + self.retention_s > now_s:
                break
            keep_from += 1
        if keep_from:
            pruned, self.records = self.records[:keep_from], self.records[keep_from:]
            self.anchor, self.first = str(pruned[-1]["hash"]), int(pruned[-1]["n"]) + 1
            self._rewrite({"audit": 1, "anchor": self.anchor, "first": self.first}, self.records)
        return keep_from

    def _rewrite(self, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for item in (header, *records):
                f.write(json.dumps(item, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.records = list(records)
        self.last = str(self.records[-1]["hash"]) if self.records else str(header["anchor"])
        self._write_head()

    def _write_head(self) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"last": self.last, "count": len(self.records)}) + "\n")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError("cannot read the audit log %s: %s" % (
            path, err.strerror if isinstance(err, OSError) else "not UTF-8 text")) from None
    items: list[Any] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError:
                if not items:  # the first line is not even JSON: some other file
                    raise SourceError("%s is not a tcu audit log (its first line is not a JSON header)"
                                      % path) from None
                raise SourceError("the audit log %s is damaged: line %d is not a JSON record"
                                  % (path, number)) from None
    if not items or not isinstance(items[0], dict) or items[0].get("audit") != 1:
        raise SourceError("%s is not a tcu audit log (no header)" % path)
    return items[0], items[1:]


def verify(path: str | os.PathLike[str]) -> Verdict:
    """Check the chain from the header's anchor to the head file; every break is named."""
    header, records = _read(Path(path))
    verdict = Verdict(records=len(records))
    prev, expected_n = str(header.get("anchor")), header.get("first")
    for i, record in enumerate(records):
        where = "record %d (line %d)" % (i + 1, i + 2)
        if not isinstance(record, dict) or any(k not in record for k in (*FIELDS, "hash")) or \
                type(record["n"]) is not int:
            verdict.problems.append("%s: malformed" % where)
            continue
        if record["n"] != expected_n:
            verdict.problems.append("%s: number %s where %s was expected: records deleted or reordered"
                                    % (where, record["n"], expected_n))
        if record["prev"] != prev:
            verdict.problems.append("%s: does not follow the record before it: deleted or reordered" % where)
        if record_hash(record) != record["hash"]:
            verdict.problems.append("%s: its content does not match its hash: edited" % where)
        prev, expected_n = str(record["hash"]), record["n"] + 1
    head_path = Path(path).with_name(Path(path).name + ".head")
    try:
        head = json.loads(head_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        head = None
    if not isinstance(head, dict):
        verdict.problems.append("the head file %s is missing or unreadable" % head_path)
        return verdict
    if head.get("last") != prev or head.get("count") != len(records):
        verdict.problems.append("the log ends at record %d, the head says %s records: records cut off the end"
                                % (len(records), head.get("count")))
    return verdict
