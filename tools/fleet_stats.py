"""A fleet's figures: counters, PUBACK latencies, a snapshot a second (summed across
processes) and the summary printed as JSON at the end."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

COUNTERS = ("connected", "connects", "disconnects", "in_session", "uplinks", "located", "acks", "located_acks",
            "errors", "triggers", "commands", "outages", "reboots", "lost")
MAX_ERRORS_KEPT = 20


def quantile(samples: Any, q: float) -> float | None:
    """The q-quantile (nearest rank) of samples, or None for none."""
    if not len(samples):
        return None
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))])


@dataclass
class FleetStats:
    connected: int = 0
    connects: int = 0
    disconnects: int = 0
    in_session: int = 0
    uplinks: int = 0
    located: int = 0
    acks: int = 0
    located_acks: int = 0
    errors: int = 0
    triggers: int = 0
    commands: int = 0
    outages: int = 0
    reboots: int = 0
    lost: int = 0  # located uplinks never acknowledged when the fleet stopped
    error_lines: list[str] = field(default_factory=list)
    latencies: array = field(default_factory=lambda: array("d"))  # PUBACK latency, s, whole run
    window: array = field(default_factory=lambda: array("d"))  # since the last snapshot

    def published(self, located: bool) -> None:
        self.uplinks += 1
        self.located += located

    def acked(self, latency_s: float, located: bool) -> None:
        self.acks += 1
        self.located_acks += located
        self.latencies.append(latency_s)
        self.window.append(latency_s)

    def error(self, line: str) -> None:
        self.errors += 1
        if len(self.error_lines) < MAX_ERRORS_KEPT:
            self.error_lines.append(line)

    def snapshot(self) -> dict[str, Any]:
        """The counters and this window's latencies (which then start again)."""
        snap: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        snap["window"] = list(self.window)
        self.window = array("d")
        return snap


def merge(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    """Several processes' snapshots as one."""
    total: dict[str, Any] = {name: sum(s.get(name, 0) for s in snaps) for name in COUNTERS}
    total["window"] = [x for s in snaps for x in s.get("window", [])]
    return total


def summary(stats: list[FleetStats], *, units: int, processes: int, connect_s: float | None, run_s: float,
            rss_per_unit_kb: float | None) -> dict[str, Any]:
    """The JSON summary: totals, rates and latency quantiles in milliseconds."""
    out: dict[str, Any] = {"units": units, "processes": processes}
    for name in COUNTERS:
        if name not in ("connected", "in_session"):
            out[name] = sum(getattr(s, name) for s in stats)
    latencies = [x for s in stats for x in s.latencies]
    out["connect_s"] = None if connect_s is None else round(connect_s, 2)
    out["run_s"] = round(run_s, 2)
    out["uplinks_per_s"] = round(out["uplinks"] / run_s, 1) if run_s > 0 else None
    out["located_per_s"] = round(out["located"] / run_s, 1) if run_s > 0 else None
    for q in (0.5, 0.99):
        value = quantile(latencies, q)
        out["puback_p%d_ms" % round(q * 100)] = None if value is None else round(value * 1000, 2)
    out["rss_per_dormant_unit_kb"] = None if rss_per_unit_kb is None else round(rss_per_unit_kb, 1)
    out["error_lines"] = [line for s in stats for line in s.error_lines][:MAX_ERRORS_KEPT]
    return out
