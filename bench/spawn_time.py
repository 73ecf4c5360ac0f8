"""Spawn-to-exit time of `tcu trigger crash` and `tcu status --json`, in an editable and in a
normal install, beside a bare `python3 -c pass`, all taking turns in the same run.

Builds three temporary virtual environments with the same interpreter: one with
`pip install -e REPO` (a plain .pth path entry: REPO/src), one with `pip install CLONE` from a
fresh `git clone` of REPO (the wheel's files, compiled by pip, in site-packages), and one with
`pip install -e CLONE` after `compileall` over the clone: an editable checkout that has its
.pyc files, which REPO has not when PYTHONDONTWRITEBYTECODE is set. All with --no-deps: these
commands import only the standard library and tcu (tests/test_imports.py and
tests/test_control_client.py keep it so). A thread answers on a Unix control socket as
`tcu run` does (a text frame rendered by the unit's code), so each command does its whole job.

Run: python bench/spawn_time.py [--rounds N]    (default 40 rounds; reports p50, p90 and the
ratio of each p50 to the bare interpreter's, the target being <= 1.5x; the p50 CPU time of each
child (user + system) and its ratio, steadier on a shared machine; the load; and whether the
editable checkout had .pyc files: not with PYTHONDONTWRITEBYTECODE set)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tcu.emulator.control_text import FORMATS, frame, render

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.5
PACKAGES = ("firmware", "hal", "protocol", "emulator", "tools", "src")
STATUS = {"unit": "unit-0001", "boot": 1, "state": "dormant", "indicator": False, "sessions": [],
          "gps": {"source": "/dev/ttyACM0", "alive": True, "has_fix": True, "last_fix_age_s": 0.4},
          "link": {"connected": True, "acked": 12, "outbox": 0}}


def serve(path: str) -> None:
    """Answer every request like a unit's control socket (emulator/daemon.py): a JSON line, or
    the text frame `tcu` asks for, rendered by the unit's own code."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data or b"{}")
                answer = {"ok": True, "indicator": True} if request.get("op") != "status" else {
                    "ok": True, "status": STATUS}
                if request.get("format") in FORMATS:  # as emulator/daemon.py answers `tcu`
                    conn.sendall(frame(*render(request, answer, lambda: STATUS)))
                else:
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    threading.Thread(target=loop, daemon=True).start()


def venv(where: Path, *install: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "--no-deps", *install], check=True, stdout=subprocess.DEVNULL)
    return where / "bin"


def spawn(argv: list[str]) -> tuple[float, float]:
    """(wall seconds from spawn to exit, the child's CPU seconds: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit("%s failed: %s" % (" ".join(argv), proc.stderr.decode().strip()))
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def bytecode_note() -> str:
    """Whether the editable runs read .pyc files: with PYTHONDONTWRITEBYTECODE set, a checkout
    gets none, and every start compiles the modules it imports (README, "Spawn time")."""
    cached = Path(importlib.util.cache_from_source(str(REPO / "tools" / "control_cmd.py"))).exists()
    return "PYTHONDONTWRITEBYTECODE=%s; the editable checkout's modules: %s" % (
        os.environ.get("PYTHONDONTWRITEBYTECODE", "(unset)"),
        "read from __pycache__" if cached else "no .pyc, compiled from source at every start")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tcu-spawn-") as tmp:
        root = Path(tmp)
        clone = root / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        print("building the three installs ...", file=sys.stderr)
        editable = venv(root / "editable", "-e", str(REPO))
        compiled = venv(root / "compiled", "-e", str(clone))  # an editable checkout with its .pyc files
        subprocess.run([str(compiled / "python"), "-m", "compileall", "-q", *(str(clone / d) for d in PACKAGES)],
                       check=True)
        normal = venv(root / "normal", str(clone))
        control = str(root / "control.sock")
        serve(control)
        bare = [str(normal / "python"), "-c", "pass"]
        cases = {"bare python -c pass": bare}
        for label, bindir in (("editable", editable), ("editable, .pyc", compiled), ("normal", normal)):
            cases["tcu trigger crash (%s)" % label] = [str(bindir / "tcu"), "trigger", "crash", "--control", control]
            cases["tcu status --json (%s)" % label] = [str(bindir / "tcu"), "status", "--json", "--control", control]
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for command in cases.values():
            spawn(command)  # warm the page cache and the .pyc files
        for _ in range(args.rounds):  # taking turns: load on a shared machine hits every case alike
            for name, command in cases.items():
                wall, used = spawn(command)
                times[name].append(wall)
                cpu[name].append(used)
    base, cpu_base = statistics.median(times["bare python -c pass"]), statistics.median(cpu["bare python -c pass"])
    print("%-40s %8s %8s %7s %8s %7s" % ("command (%d rounds, same run)" % args.rounds, "p50 ms", "p90 ms", "x bare",
                                         "CPU ms", "x bare"))
    worst = 0.0
    for name, samples in times.items():
        p50, p90 = statistics.median(samples), statistics.quantiles(samples, n=10)[-1]
        ratio = p50 / base
        worst = max(worst, ratio)
        used = statistics.median(cpu[name])
        print("%-40s %8.1f %8.1f %7.2f %8.1f %7.2f" % (name, p50 * 1000, p90 * 1000, ratio, used * 1000,
                                                      used / cpu_base))
    print("worst p50 ratio %.2fx bare (target <= %.1fx): %s" % (worst, TARGET, "ok" if worst <= TARGET else "OVER"))
    print("load average %.2f %.2f %.2f on %d CPUs (CPU: the child's user + system time, p50; steadier than "
          "wall time on a shared machine)" % (*os.getloadavg(), os.cpu_count() or 0))
    print(bytecode_note())
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
