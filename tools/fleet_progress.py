"""The fleet's live progress: a rich panel on a terminal (stderr), a plain line every 5 s
when stderr is not one."""

from __future__ import annotations

import sys
import time
from typing import Any

from tcu.tools.fleet_stats import quantile

PLAIN_EVERY_S = 5.0


class Progress:
    def __init__(self, units: int, quiet: bool = False) -> None:
        self.units = units
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.live: Any = None
        self.last: dict[str, Any] | None = None
        self.last_at = time.monotonic()
        self.started = time.monotonic()
        self._plain_at = 0.0

    def __enter__(self) -> Progress:
        if not self.quiet and self.tty:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._render({}), console=Console(stderr=True), refresh_per_second=2)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, snap: dict[str, Any]) -> None:
        now = time.monotonic()
        rates = {}
        if self.last is not None and now > self.last_at:
            for name in ("uplinks", "located"):
                rates[name] = (snap[name] - self.last[name]) / (now - self.last_at)
        self.last, self.last_at = snap, now
        snap = dict(snap, **{"%s_per_s" % k: v for k, v in rates.items()})
        if self.live is not None:
            self.live.update(self._render(snap))
        elif not self.quiet and now - self._plain_at >= PLAIN_EVERY_S:
            self._plain_at = now
            print("fleet: %s" % self._line(snap), file=sys.stderr, flush=True)

    def _line(self, snap: dict[str, Any]) -> str:
        p50, p99 = quantile(snap.get("window", []), 0.5), quantile(snap.get("window", []), 0.99)
        return ("%4.0fs connected %d/%d, in session %d, uplinks %.0f/s (located %.0f/s), PUBACK p50 %s p99 %s, "
                "errors %d" % (time.monotonic() - self.started, snap.get("connected", 0), self.units,
                               snap.get("in_session", 0), snap.get("uplinks_per_s", 0), snap.get("located_per_s", 0),
                               _ms(p50), _ms(p99), snap.get("errors", 0)))

    def _render(self, snap: dict[str, Any]) -> Any:
        from rich.table import Table

        table = Table(title="tcu fleet: %d units" % self.units, show_header=False)
        window = snap.get("window", [])
        rows = [("elapsed", "%.0f s" % (time.monotonic() - self.started)),
                ("connected", "%d / %d" % (snap.get("connected", 0), self.units)),
                ("in session", str(snap.get("in_session", 0))),
                ("uplinks/s", "%.0f (located %.0f)" % (snap.get("uplinks_per_s", 0), snap.get("located_per_s", 0))),
                ("PUBACK p50 / p99", "%s / %s" % (_ms(quantile(window, 0.5)), _ms(quantile(window, 0.99)))),
                ("triggers / commands", "%d / %d" % (snap.get("triggers", 0), snap.get("commands", 0))),
                ("outages / reboots", "%d / %d" % (snap.get("outages", 0), snap.get("reboots", 0))),
                ("errors", str(snap.get("errors", 0)))]
        for name, value in rows:
            table.add_row(name, value)
        return table


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else "%.1f ms" % (seconds * 1000)
