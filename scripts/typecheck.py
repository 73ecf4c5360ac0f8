"""The whole-program type check that scripts/test runs: mypy and pyright over every `tcu.*` module.

    .venv/bin/python scripts/typecheck.py            # mypy (pyproject's [tool.mypy]), then pyright
    .venv/bin/python scripts/typecheck.py --prove    # fails unless both report a bad cross-package call

mypy reads its packages from pyproject.toml (`tcu`, found through mypy_path = "src"): strict on
tcu.firmware and tcu.protocol, every other module checked, a missing import an error except for
the named third-party modules that ship no types.

pyright (basic mode, pyproject's [tool.pyright]) checks src/tcu, tests/, bench/ and scripts/.
Its file search does not descend into symbolic links, so the modules are passed by their
src/tcu/... paths (what `tcu.*` imports resolve to); listing the top-level folders instead would
give each module two names (`tools.x` and `tcu.tools.x`) and two incompatible copies of every class.
The PyPI `pyright` package (a test extra, pinned) fetches its pinned npm release on first use.

--prove copies the checkout to a temporary directory, adds a module to tools/ that passes a str
where tcu.firmware's Unit.handle takes an int and an int where tcu.hal's iter_fixes takes a str,
and fails unless each checker reports both lines: it keeps the check from going quietly
toothless (an import resolving to Any again would make both calls pass).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYRIGHT_DIRS = ("tests", "bench", "scripts")

WRONG = '''"""Scratch module of scripts/typecheck.py --prove: two wrong-typed cross-package calls."""
from tcu.firmware.unit import Unit
from tcu.hal import iter_fixes


def wrong(unit: Unit) -> None:
    unit.handle(None, "now")  # PROVE-1: now_ms is an int
    iter_fixes(42)  # PROVE-2: a source is a str
'''


def modules(root: Path) -> list[str]:
    """Every module pyright checks, by the path its `tcu.*` name resolves to."""
    found = []
    for top, dirs, files in os.walk(root / "src" / "tcu", followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.join(top, f) for f in sorted(files) if f.endswith(".py")]
    return found + [str(root / d) for d in PYRIGHT_DIRS]


def run(root: Path) -> dict[str, tuple[int, str]]:
    """Run both checkers in ``root``: each one's exit status and output."""
    results = {}
    for argv in ([str(BIN / "mypy")], [str(BIN / "pyright"), *modules(root)]):
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True)
        name = Path(argv[0]).name
        print("%s: %s" % (name, (proc.stdout.strip().splitlines() or ["(no output)"])[-1].strip()), flush=True)
        results[name] = (proc.returncode, proc.stdout + proc.stderr)
    return results


def prove() -> int:
    with tempfile.TemporaryDirectory(prefix="tcu-typecheck-") as tmp:
        root = Path(tmp) / "repo"
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        for name in filter(None, files.decode().split("\0")):
            src, dest = REPO / name, root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                dest.symlink_to(os.readlink(src))
            elif src.is_file():
                shutil.copy2(src, dest)
        (root / ".venv").symlink_to(REPO / ".venv")
        (root / "tools" / "_prove_wrong.py").write_text(WRONG)
        results = run(root)
        lines = [i + 1 for i, text in enumerate(WRONG.splitlines()) if "PROVE-" in text]
        missing = ["%s line %d" % (name, line) for name, (status, output) in results.items()
                   for line in lines if status == 0 or "_prove_wrong.py:%d:" % line not in output]
        if missing:
            print("\n".join(output for _, output in results.values()))
            print("FAIL: the type check did not report: %s" % ", ".join(missing))
            return 1
        print("OK: mypy and pyright both fail on the wrong-typed cross-package calls (lines %s)" % lines)
        return 0


def main(argv: list[str]) -> int:
    if argv == ["--prove"]:
        return prove()
    if argv:
        sys.exit("usage: typecheck.py [--prove]")
    results = run(REPO)
    for status, output in results.values():
        if status:
            print(output)
    return max(status for status, _ in results.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
