"""The modem figures: coverage back -> first PUBACK, crash -> SMS sent, CPU cost of polling.

Parts: a real Mosquitto (started here on a free loopback port), `tcu modem-sim` (a
subprocess, on a pty, with its data relay), and in this process the unit's own modem thread
(emulator/modem_link.py) driving the unit's DurableUplink through set_data_path, as in
`tcu run --modem`.

- outages: N times, coverage off (ctl), one uplink queued, coverage on; the time from the
  ctl command to the first PUBACK (p50, p99);
- SMS: N SMS-SUBMITs through the modem thread (AT+CMGS, prompt, PDU, +CMGS): queue to
  +CMGS; crash to SMS is sms_after_s plus this (test_e2e_modem measures it whole);
- CPU: this process's CPU time per second of wall time with the modem thread polling every
  10 s (the default) and every 1 s, against the same process with no modem thread.

Usage: python bench/modem_bench.py [--outages 50] [--sms 20] [--cpu-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tcu.emulator.link import DurableUplink
from tcu.emulator.modem_link import ModemLink
from tcu.firmware.events import Publish
from tcu.hal.sms_pdu import encode_submit
from tcu.protocol import messages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out")
        time.sleep(0.002)


def ctl(sock: str, op: str, value: str | None = None) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock)
        s.sendall(json.dumps({"op": op, "value": value}).encode() + b"\n")
        s.makefile().readline()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "modem bench").splitlines()[0])
    parser.add_argument("--outages", type=int, default=50)
    parser.add_argument("--sms", type=int, default=20)
    parser.add_argument("--cpu-s", type=float, default=10.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tcu-modem-bench-"))
    mq_port, relay = free_port(), free_port()
    (tmp / "mq.conf").write_text("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                 "max_queued_messages 0\n" % mq_port)
    procs = [subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp / "mq.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    sim_sock = str(tmp / "sim.sock")
    procs.append(subprocess.Popen([sys.executable, "-m", "tcu.tools.cli", "modem-sim", "--link", str(tmp / "modem"),
                                   "--data", "127.0.0.1:%d=127.0.0.1:%d" % (relay, mq_port), "--control", sim_sock],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        wait(lambda: os.path.exists(sim_sock))
        uplink = DurableUplink("mqtt://127.0.0.1:%d" % relay, "bench", str(tmp / "outbox"), connect_now=False)
        uplink.set_data_path(False)
        modem = ModemLink(str(tmp / "modem"), poll_s=10.0, on_path=uplink.set_data_path)
        wait(lambda: uplink.connected)
        latencies = []
        for seq in range(1, args.outages + 1):
            ctl(sim_sock, "coverage", "off")
            wait(lambda: not uplink.connected)
            uplink.send(Publish(messages.encode_session_start(seq, 1, 1, int(time.time()), 1), 0, 1, seq, False))
            time.sleep(0.05)
            began = time.monotonic()
            ctl(sim_sock, "coverage", "on")
            wait(lambda b=began: uplink.stats.first_ack_at is not None and uplink.stats.first_ack_at > b)
            latencies.append((uplink.stats.first_ack_at or 0) - began)
        print("coverage back -> first PUBACK over %d outages: p50 %.0f ms, p99 %.0f ms, max %.0f ms; "
              "connects %d" % (args.outages, 1000 * statistics.median(latencies), 1000 * percentile(latencies, 0.99),
                               1000 * max(latencies), uplink.stats.connects))
        pdu, length = encode_submit("+15550001", bytes(60))
        took: list[float] = []
        for _ in range(args.sms):
            done = threading.Event()
            began = time.monotonic()
            modem.send_sms(pdu, length, lambda ref, err, b=began, d=done: None if (took.append(time.monotonic() - b),
                                                                                      d.set()) else None)
            done.wait(10)
        print("SMS queued -> +CMGS over %d: p50 %.0f ms, max %.0f ms (crash -> SMS = sms_after_s + this)"
              % (len(took), 1000 * statistics.median(took), 1000 * max(took)))
        cpu = {}
        for poll in (10.0, 1.0):
            modem.poll_s = poll
            time.sleep(poll + 0.2)  # one poll at the new period first
            c0, w0 = time.process_time(), time.monotonic()
            time.sleep(args.cpu_s)
            cpu[poll] = (time.process_time() - c0) / (time.monotonic() - w0)
        modem.close()
        uplink.close()
        c0, w0 = time.process_time(), time.monotonic()
        time.sleep(args.cpu_s)
        base = (time.process_time() - c0) / (time.monotonic() - w0)
        print("CPU of the modem thread (and the idle link): %.2f%% polling every 10 s, %.2f%% every 1 s; "
              "%.2f%% without (%.0f s each)" % (100 * cpu[10.0], 100 * cpu[1.0], 100 * base, args.cpu_s))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
