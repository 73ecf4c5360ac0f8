"""Reloading a running unit's configuration: SIGHUP, or {"op": "reload"} (`tcu reload`).

The config file is read again (the command line's options still win) and compared with the
running config. Applied live: service overrides (to sessions started from now on: an active
session keeps the terms it started with), the indicator, the trigger inputs, the audit
retention, the backend keys and the end-to-end key, and the GPS source and baud rate (its
reader restarts). The unit id, state directory, control socket, broker and TLS files need a
restart: they keep their running values and the answer lists them.

A reload is all or nothing: everything that can fail (reading the file, keys, opening the
new indicator, GPS or inputs) happens before anything changes, and a failed step puts back
what an earlier one swapped. An invalid config leaves the unit as it was and is answered with
the error; the unit never dies of a reload.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tcu.emulator.config import Config, changes, key_of
from tcu.emulator.crypto import load_e2e_key
from tcu.firmware.errors import TcuError
from tcu.hal.indicator import open_indicator

if TYPE_CHECKING:
    from tcu.emulator.daemon import UnitDaemon

NOTE = "active sessions keep the terms they started with; sessions started from now on follow the new ones"


def reload(daemon: UnitDaemon) -> dict[str, Any]:
    """Re-read the config file and apply it; the answer for the control socket. Never raises."""
    with daemon.reload_lock:
        running = daemon.config
        if running is None or running.path is None or daemon.loader is None:
            return _refused(None, "this unit runs without a config file: start it with `tcu run --config FILE`")
        if daemon.closing:
            return _refused(running.path, "the unit is shutting down")
        try:
            new = daemon.loader()
            live, restart = changes(running, new)
            _apply(daemon, running, new, live)
        except (TcuError, OSError) as err:
            return _refused(running.path, str(err))
        daemon.config = replace(new, **{attr: getattr(running, attr) for attr in restart})
    applied, needs_restart = [key_of(a) for a in live], [key_of(a) for a in restart]
    _log("tcu run: reloaded %s: applied %s; needs a restart: %s" % (
        running.path, ", ".join(applied) or "nothing (no change)", ", ".join(needs_restart) or "nothing"))
    return {"ok": True, "config": running.path, "applied": applied, "needs_restart": needs_restart, "note": NOTE}


def _refused(path: str | None, error: str) -> dict[str, Any]:
    _log("tcu run: reload refused, the running config is unchanged: %s" % error)
    return {"ok": False, "config": path, "error": error + " (the running config is unchanged)"}


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _apply(daemon: UnitDaemon, old: Config, new: Config, live: list[str]) -> None:
    """Prepare everything new (may raise: nothing changed), then swap it in under the unit's lock."""
    from tcu.emulator.daemon import verifier_of

    unit = daemon.live.unit
    table = new.service_table()
    verifier = verifier_of(new) if {"backend_key", "backend_hmac_key"} & set(live) else unit.verifier
    e2e_key = daemon.live.e2e_key
    if "e2e_key" in live:
        e2e_key = load_e2e_key(new.e2e_key) if new.e2e_key else None
    indicator = open_indicator(new.indicator) if "indicator" in live else None
    undo: list[Callable[[], None]] = []
    try:
        if "gps" in live or "baud" in live:
            _restart_gps(daemon, new, old)
            undo.append(lambda: _restart_gps(daemon, old, None))
        if "inputs" in live:
            _swap_inputs(daemon, new, old)
    except BaseException:
        for step in reversed(undo):
            step()
        if indicator is not None:
            indicator.close()
        raise
    with daemon.live.lock:  # the GPS thread, the timer, the downlink and the control socket wait
        if indicator is not None:
            indicator.set(unit.indicator)
            indicator, daemon.indicator = daemon.indicator, indicator  # (the old one, to close below)
        unit.services = table
        unit.verifier = verifier
        daemon.live.e2e_key = e2e_key
        daemon.live.audit.retention_s = int(new.audit_retention_h * 3600)
        daemon.apply_modem_settings(new)
    if indicator is not None:
        indicator.close()


def _restart_gps(daemon: UnitDaemon, new: Config, fallback: Config | None) -> None:
    """Close the GPS port, open new.gps; if that fails, reopen fallback's and raise."""
    from tcu.emulator.daemon import GpsHealth, open_gps

    daemon.stop_gps()
    try:
        stream = open_gps(new.gps, new.baud)
    except BaseException:
        if fallback is not None:
            daemon.start_gps(open_gps(fallback.gps, fallback.baud), GpsHealth(fallback.gps))
        raise
    daemon.start_gps(stream, GpsHealth(new.gps))


def _swap_inputs(daemon: UnitDaemon, new: Config, old: Config) -> None:
    """Close the inputs (a pin can be held once), open new.inputs; on failure reopen old's."""
    if daemon.inputs is not None:
        daemon.inputs.close()
        daemon.inputs = None
    try:
        daemon.inputs = daemon.open_inputs(new.inputs)
    except BaseException:
        daemon.inputs = daemon.open_inputs(old.inputs)
        raise
