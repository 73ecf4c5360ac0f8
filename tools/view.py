"""Decoded uplinks as JSON-ready dicts, for `tcu replay --jsonl`, the backend and the demo.

A located report carries its time relative to its session's start; the view remembers each
session's start (per unit) to give every report an absolute ISO 8601 UTC time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tcu.firmware.services import PURPOSE_NAMES, TRIGGER_NAMES
from tcu.firmware.transitions import REASON_NAMES
from tcu.protocol import commands, messages

RESULT_NAMES = {messages.RESULT_ACCEPTED: "accepted", messages.RESULT_REJECTED: "rejected",
                messages.RESULT_PROVISIONAL: "provisional"}


def iso_utc(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class UplinkView:
    """Turns uplink payloads into dicts; keeps (unit, sid) -> session start for reports."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, int], messages.Message] = {}
        self._purposes: dict[tuple[str, int], int] = {}  # from any report: a late joiner's session ends

    def describe(self, payload: bytes, unit: str = "") -> dict[str, Any]:
        msg = messages.decode(payload)
        key = (unit, msg.sid)
        if msg.type == messages.T_SESSION_START:
            self._sessions[key] = msg
        start = self._sessions.get(key)
        if msg.purpose is not None:
            self._purposes[key] = msg.purpose
        purpose = msg.purpose if msg.purpose is not None else start.purpose if start else self._purposes.get(key)
        out: dict[str, Any] = {
            "type": messages.TYPE_NAMES[msg.type],
            "seq": msg.seq,
            "session": msg.sid,
            "trigger": TRIGGER_NAMES.get(start.trigger, str(start.trigger)) if start and start.trigger else None,
            "purpose": purpose_name(purpose),
            "bytes": len(payload),
        }
        if unit:
            out["unit"] = unit
        if msg.type in (messages.T_REPORT, messages.T_BATCH):
            out.update(_located(msg, start))  # a batch: its first fix here
            if msg.type == messages.T_BATCH:
                out["fixes"] = len(msg.fixes)
        elif msg.type == messages.T_COMMAND_RESPONSE:
            out["counter"] = msg.counter
            out["result"] = RESULT_NAMES.get(msg.result or 0, str(msg.result))  # provisional is not rejected
            if msg.reason is not None:
                out["reason"] = commands.REASON_NAMES.get(msg.reason, str(msg.reason))
        else:
            out["time"] = iso_utc(msg.time or 0)
        if msg.type == messages.T_SESSION_START:
            out.update(_start_extras(msg))
        if msg.type == messages.T_SESSION_END:
            out["reason"] = REASON_NAMES.get(msg.reason or 0, str(msg.reason))
            self._sessions.pop(key, None)
            self._purposes.pop(key, None)
        return out


def _start_extras(msg: messages.Message) -> dict[str, Any]:
    """A test call's mark, and the eCall MSD decoded (an MSD that does not decode: MsdError)."""
    out: dict[str, Any] = {}
    if msg.test:
        out["test"] = True
    if msg.msd is not None:
        from tcu.emulator import msd

        out["msd"] = msd.decode(msg.msd)["msd"]["msdStructure"]
    return out


def purpose_name(code: int | None) -> str | None:
    return None if code is None else PURPOSE_NAMES.get(code, str(code))


def _located(msg: messages.Message, start: messages.Message | None) -> dict[str, Any]:
    assert msg.lat_e7 is not None and msg.lon_e7 is not None and msg.dt is not None
    out: dict[str, Any] = {
        # Without its session start (joined late) a report has no absolute time.
        "time": iso_utc(start.time + msg.dt) if start and start.time is not None else None,
        "lat": msg.lat_e7 / 1e7,
        "lon": msg.lon_e7 / 1e7,
    }
    if msg.speed_kmh is not None:
        out["speed"] = round(msg.speed_kmh / 3.6, 2)
    if msg.course_2deg is not None:
        out["course"] = msg.course_2deg * 2
    names = {messages.EXT_ALT_M: "alt", messages.EXT_SATS: "sats", messages.EXT_MODE: "mode"}
    for key, value in msg.ext.items():
        if key == messages.EXT_HDOP_D:
            out["hdop"] = value / 10
        elif key == messages.EXT_SESSIONS:
            out["also_sessions"] = value  # overlapping sessions this report serves too
        else:
            out[names[key]] = value
    return out
