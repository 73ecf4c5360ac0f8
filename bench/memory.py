"""Resident memory of `tcu run` in steady state, dormant and during a crash session, beside a
minimal paho subscriber and a bare `import paho.mqtt.client` process measured in the same run.

Setup (all real, all started and stopped by PID here): a Mosquitto on a free loopback port;
`tcu replay-serial TRACE --retime --loop` feeding a pty at the trace's own 1 Hz, its times
moved to now; `tcu run` on that pty and that broker. Baselines: `python -c "import
paho.mqtt.client"` then idle, and a paho subscriber on the unit's uplinks (loop_forever),
which receives the crash session's reports like a backend would.

Phases of --seconds each, sampled every 0.5 s from /proc/PID/status: dormant (once the
unit hears the GPS), then after `tcu trigger crash` (crash: a located report every 2 s).
"steady VmRSS" is the median of the phase's second half; VmHWM is the peak resident size
since the process started, read at the end of the phase; RssAnon is the private part of
the steady VmRSS (the rest is file-backed: the interpreter, shared libraries). The figure
is tcu run's VmHWM at the end of the crash phase. Target: <= 40 MB.

Usage: python bench/memory.py [--seconds 20] [--trace ublox-8.log]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tcu.tools.control_json import ask

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO.parent / "shared" / "traces" / "gpsd"
TCU = [sys.executable, "-m", "tcu.tools.cli"]
TARGET_MB = 40.0
SUBSCRIBER = """
import sys, paho.mqtt.client as mqtt
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
c.on_connect = lambda c, *a: c.subscribe("tcu/#", qos=1)
c.on_message = lambda c, u, m: (sys.stdout.write(m.topic + "\\n"), sys.stdout.flush())
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_forever()
"""
BARE = "import paho.mqtt.client, time\nwhile True: time.sleep(3600)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Stop one process this bench started, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for %s" % what)
        time.sleep(0.02)


class Mosquitto:
    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        self.url = "mqtt://127.0.0.1:%d" % self.port
        conf = os.path.join(workdir, "mosquitto.conf")
        with open(conf, "w") as fh:
            fh.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                     % self.port)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit("mosquitto exited") from None
                return False

        wait_for(listening, 10, "mosquitto")

    def stop(self) -> None:
        stop(self.proc)


def start_replay(trace: Path) -> tuple[subprocess.Popen[str], str]:
    """`tcu replay-serial TRACE --retime --loop` on a new pty; (process, pty path)."""
    proc = subprocess.Popen([*TCU, "replay-serial", str(trace), "--retime", "--loop"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "writing to " not in line:
        stop(proc)
        raise SystemExit("tcu replay-serial: %s" % line.strip())
    return proc, line.split("writing to ")[1].split()[0]


def start_unit(broker_url: str, gps: str, workdir: str, *extra: str,
               command: list[str] = TCU) -> tuple[subprocess.Popen[str], str]:
    """`tcu run` on gps and the broker, state in workdir; (process, control socket), once it
    listens on its control socket."""
    control = os.path.join(workdir, "control.sock")
    proc = subprocess.Popen([*command, "run", "--broker", broker_url, "--gps", gps, "--baud", "9600",
                             "--unit", "bench-unit", "--state", os.path.join(workdir, "state"),
                             "--control", control, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def up() -> bool:
        if proc.poll() is not None:
            raise SystemExit("tcu run exited: %s" % (proc.stderr.read() if proc.stderr else ""))
        return os.path.exists(control)

    wait_for(up, 20, "tcu run's control socket")
    return proc, control


def status(control: str) -> dict[str, object]:
    answer = ask(control, {"op": "status"})
    return answer["status"] if isinstance(answer.get("status"), dict) else {}


def gps_alive(control: str) -> bool:
    gps = status(control).get("gps")
    return isinstance(gps, dict) and bool(gps.get("has_fix"))


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of a process, in kB, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0])
    return out


def sample(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    """Per process: steady VmRSS and RssAnon (medians of the second half), VmHWM at the end, in MB."""
    series: dict[str, list[dict[str, int]]] = {name: [] for name in pids}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, pid in pids.items():
            series[name].append(memory_kb(pid))
        time.sleep(0.5)
    out = {}
    for name, rows in series.items():
        tail = rows[len(rows) // 2:]
        out[name] = {"rss": statistics.median(r["VmRSS"] for r in tail) / 1024,
                     "anon": statistics.median(r["RssAnon"] for r in tail) / 1024,
                     "hwm": memory_kb(pids[name])["VmHWM"] / 1024}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase (default 20)")
    parser.add_argument("--trace", default="ublox-8.log", help="a gpsd trace in %s (default: ublox-8.log)" % TRACES)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-memory-")
    procs: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
    broker = Mosquitto(workdir)
    try:
        replay, pty = start_replay(TRACES / args.trace)
        procs.append(replay)
        bare = subprocess.Popen([sys.executable, "-c", BARE])
        subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(broker.port)],
                                      stdout=subprocess.DEVNULL)
        procs += [bare, subscriber]
        unit, control = start_unit(broker.url, pty, workdir)
        procs.append(unit)
        wait_for(lambda: gps_alive(control), 20, "the unit to get a GPS fix")
        pids = {"tcu run": unit.pid, "paho subscriber": subscriber.pid, "bare import paho": bare.pid}
        dormant = sample(pids, args.seconds)
        result = subprocess.run([*TCU, "trigger", "crash", "--control", control], capture_output=True, text=True)
        if result.returncode:
            raise SystemExit("tcu trigger crash: %s" % result.stderr.strip())
        crash = sample(pids, args.seconds)
        state = status(control)
        sessions = state.get("sessions")
        samples = sessions[0]["samples"] if isinstance(sessions, list) and sessions else 0
        link = state.get("link")
        acked = link.get("acked") if isinstance(link, dict) else None
    finally:
        for proc in reversed(procs):
            stop(proc)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("tcu run on a 1 Hz pty GPS (%s, retimed) and Mosquitto; phases of %.0f s; MB (MiB)"
          % (args.trace, args.seconds))
    print("crash session: %s located reports sampled, %s uplinks acknowledged by the broker" % (samples, acked))
    print("%-18s %12s %10s %12s %10s %10s" % ("process", "dormant RSS", "anon", "crash RSS", "anon", "VmHWM"))
    for name in pids:
        d, c = dormant[name], crash[name]
        print("%-18s %12.1f %10.1f %12.1f %10.1f %10.1f" % (name, d["rss"], d["anon"], c["rss"], c["anon"], c["hwm"]))
    unit_hwm, base = crash["tcu run"]["hwm"], crash["paho subscriber"]["hwm"]
    print("ratio: tcu run VmHWM %.1f MB = %.2fx the paho subscriber's (%.1f MB); target <= %.0f MB: %s"
          % (unit_hwm, unit_hwm / base, base, TARGET_MB, "met" if unit_hwm <= TARGET_MB else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
