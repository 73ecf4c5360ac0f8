"""The recorded traces a clone tests with: the full gpsd corpus when it is there (TCU_TRACES or
../shared/traces/gpsd), the subset in tests/data/traces otherwise, and that subset is what its
README says: the corpus's files or their beginnings."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from conftest import FULL_CORPUS, REPO, SHARED_TRACES, SUBSET_TRACES, TRACES

ROW = re.compile(r"^\| (?P<files>`[^|]+`) \| (?P<kept>whole|first (?P<size>\d+) of \d+ bytes[^|]*) \| "
                 r"(?P<sha>[0-9a-f]{16}) \|")


def table() -> dict[str, tuple[str | None, str]]:
    """The README's rows: log name -> (bytes kept if an excerpt, the corpus file's sha256 prefix)."""
    rows = {}
    for line in (SUBSET_TRACES / "README.md").read_text().splitlines():
        if m := ROW.match(line):
            names = re.findall(r"`([^`]+)`", m["files"])
            rows.update({name: (m["size"] if name.endswith(".log") else None, m["sha"]) for name in names})
    return rows


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_the_subset_is_what_its_readme_says_and_small() -> None:
    rows = table()
    shipped = {p.name for p in SUBSET_TRACES.iterdir()} - {"README.md", "COPYING"}
    assert set(rows) == shipped and len([n for n in rows if n.endswith(".log")]) == 15
    assert "BSD-2-Clause" in (SUBSET_TRACES / "COPYING").read_text()
    for name, (size, sha) in rows.items():
        if name.endswith(".log") and size is None:
            assert sha16(SUBSET_TRACES / name) == sha, name  # whole: the corpus's own bytes
        elif name.endswith(".log"):
            assert (SUBSET_TRACES / name).stat().st_size == int(size), name  # type: ignore[arg-type]
    assert sum(p.stat().st_size for p in SUBSET_TRACES.iterdir()) < 1_000_000


def test_with_the_corpus_the_subset_is_its_beginning(tmp_path: Path) -> None:
    """With the corpus beside the repository: every file is the corpus's, or its first bytes,
    and the script makes the same subset again. Without it, the table's own hashes (above)."""
    corpus = TRACES if FULL_CORPUS else SHARED_TRACES
    if not corpus.is_dir():
        assert TRACES == SUBSET_TRACES  # no corpus to compare with, as the header says
        return
    for name, (_, sha) in table().items():
        if name.endswith(".log"):
            assert sha16(corpus / name) == sha, name
        assert (corpus / name).read_bytes().startswith((SUBSET_TRACES / name).read_bytes()), name
    spec = importlib.util.spec_from_file_location("make_trace_subset", REPO / "scripts" / "make_trace_subset.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.write(corpus, tmp_path)
    for path in tmp_path.iterdir():
        assert path.read_bytes() == (SUBSET_TRACES / path.name).read_bytes(), path.name


def test_the_traces_are_chosen_tcu_traces_then_shared_then_the_subset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "SHARED_TRACES", tmp_path / "no-shared")
    monkeypatch.delenv("TCU_TRACES", raising=False)
    assert conftest._traces() == SUBSET_TRACES
    (tmp_path / "no-shared").mkdir()
    assert conftest._traces() == tmp_path / "no-shared"
    monkeypatch.setenv("TCU_TRACES", str(tmp_path))
    assert conftest._traces() == tmp_path.resolve()
    monkeypatch.setenv("TCU_TRACES", str(tmp_path / "missing"))
    with pytest.raises(pytest.UsageError, match="TCU_TRACES=.*missing is not a directory"):
        conftest._traces()


def test_a_run_on_the_subset_says_so_and_skips_nothing(tmp_path: Path) -> None:
    env = {"TCU_TRACES": str(SUBSET_TRACES), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs",
                          "tests/test_hal_nmea.py", "tests/test_hal_framer.py"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "traces: the 15-log subset in tests/data/traces\n" in run.stdout
    assert "skipped" not in run.stdout and " passed" in run.stdout
