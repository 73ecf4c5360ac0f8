"""Which MQTT client carries the unit's uplink: paho (the link since issue 12) against the
hand-written codec it replaced, measured in the same run against the same local Mosquitto.

The hand-written codec and its link are taken from the git history (commit BEFORE, the last
one with emulator/mqtt_wire.py) into a temporary directory, so nothing dead stays in the tree.
Three figures per client, best of --runs, runs alternating:
  durable link only: N uplinks of 24 B sent into DurableUplink, then drain() (outbox, fsync,
                     publish, PUBACK accounting; no trace decoding);
  replay:            `tcu replay`'s replay_to_broker on a synthetic 1 Hz trace with crash, SOS and
                     theft active (bench/outbox_throughput.py's), located uplinks per second;
and paho's raw QoS 1 rate (one client, max_inflight 20) as the ceiling.

Usage: python bench/mqtt_client_choice.py [--count 20000] [--seconds 7200] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from outbox_throughput import Mosquitto, raw_paho_rate, windows, write_trace

from tcu.emulator import link as paho_link
from tcu.firmware.events import Publish
from tcu.tools import replay_cmd

BEFORE = "1dd7b2b"  # main before issue 12: the hand-written codec's last commit
REPO = Path(__file__).resolve().parents[1]


def load_hand_written(workdir: str) -> Any:
    """The old DurableUplink (mqtt_wire codec) as a module, from git."""
    for name in ("mqtt_wire", "link"):
        text = subprocess.run(["git", "-C", str(REPO), "show", "%s:emulator/%s.py" % (BEFORE, name)],
                              check=True, capture_output=True, text=True).stdout
        text = text.replace("from tcu.emulator import mqtt_wire as wire", "import old_mqtt_wire as wire")
        Path(workdir, "old_%s.py" % name).write_text(text)
    sys.path.insert(0, workdir)
    import old_link  # type: ignore[import-not-found]

    class HandWritten(old_link.DurableUplink):  # type: ignore[misc]
        def __init__(self, *args: Any, auth: Any = None, **kwargs: Any) -> None:  # it took no credentials
            super().__init__(*args, **kwargs)

    return HandWritten


def link_rate(uplink_class: Any, url: str, outbox: str, count: int) -> float:
    actions = [Publish(bytes([0x8A]) + i.to_bytes(4, "big") + bytes(19), 0, 1, i + 1, True) for i in range(count)]
    with uplink_class(url, "bench-link", outbox, max_records=count + 10) as uplink:
        began = time.perf_counter()
        for action in actions:
            uplink.send(action)
        uplink.drain(120)
        return count / (time.perf_counter() - began)


def replay_rate(uplink_class: Any, trace: str, url: str, outbox: str, seconds: int) -> float:
    saved = replay_cmd.DurableUplink
    replay_cmd.DurableUplink = uplink_class
    try:
        began = time.perf_counter()
        result = replay_cmd.replay_to_broker(trace, windows(seconds), url, "bench-unit", outbox=outbox)
        return result.replay.located / (time.perf_counter() - began)
    finally:
        replay_cmd.DurableUplink = saved


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="uplinks for the link-only figure")
    parser.add_argument("--seconds", type=int, default=7200, help="trace length for the replay figure")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-client-")
    trace = os.path.join(workdir, "trace.log")
    write_trace(trace, args.seconds)
    clients = {"paho (the link now)": paho_link.DurableUplink,
               "hand-written codec (%s)" % BEFORE: load_hand_written(workdir)}
    best: dict[tuple[str, str], float] = {}
    broker = Mosquitto()
    try:
        raw = 0.0
        for run in range(args.runs):
            for name, cls in clients.items():
                tag = "%d-%d" % (run, len(best))
                rate = link_rate(cls, broker.url, os.path.join(workdir, "link-" + tag), args.count)
                best[(name, "link")] = max(best.get((name, "link"), 0.0), rate)
                rate = replay_rate(cls, trace, broker.url, os.path.join(workdir, "replay-" + tag), args.seconds)
                best[(name, "replay")] = max(best.get((name, "replay"), 0.0), rate)
            raw = max(raw, raw_paho_rate(broker.port, args.count, 24))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print("best of %d runs; %d uplinks for the link, a %d s trace for the replay" % (
        args.runs, args.count, args.seconds))
    print("%-32s %14s %16s" % ("client", "link uplinks/s", "replay located/s"))
    for name in clients:
        print("%-32s %14.0f %16.0f" % (name, best[(name, "link")], best[(name, "replay")]))
    print("%-32s %14.0f" % ("paho raw QoS 1 (ceiling)", raw))
    paho, hand = list(clients)
    print("paho / hand-written: link %.2f, replay %.2f" % (
        best[(paho, "link")] / best[(hand, "link")], best[(paho, "replay")] / best[(hand, "replay")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
