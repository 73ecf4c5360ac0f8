"""What `tcu backend tap` shows of one MQTT message: its size, its CBOR in diagnostic notation
(RFC 8949 section 8) and its meaning by the protocol's own strict decoders, by topic:
uplinks (tcu/v1/UNIT/up/BOOT), the retained status (tcu/v1/UNIT/status) and signed downlink
commands (tcu/v1/UNIT/down). A payload that is not CBOR, or not what its topic should carry,
is shown as hex with the decoder's reason; nothing here raises on what the network sends.

Diagnostic notation comes from cbor-diag (cbor_diag on PyPI: MIT/Apache, Rust-backed, wheels
for x86_64, aarch64 and armv7 Linux, with diag2cbor for the way back); with pretty=False it is
plain RFC 8949 section 8 notation on one line, without EDN's application-oriented literals.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cbor_diag import cbor2diag

from tcu.emulator.crypto import is_sealed, open_uplink
from tcu.emulator.uplink import TOPIC_ROOT, parse_uplink_topic
from tcu.firmware.errors import TcuError
from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages
from tcu.tools.view import UplinkView, iso_utc

STATE_BITS = ((messages.STATE_ONLINE, "online"), (messages.STATE_INDICATOR, "indicator"),
              (messages.STATE_GNSS_FIX, "gnss_fix"), (messages.STATE_TIME_TRUSTED, "time_trusted"),
              (messages.STATE_TIME_NTP, "time_ntp"))
UNITS = {"speed": "m/s", "course": "deg", "alt": "m"}  # the human line's; --json keeps the backend's numbers
ALG_NAMES = {cose.ALG_EDDSA: "EdDSA", cose.ALG_HMAC_256_256: "HMAC 256/256", cose.ALG_A128GCM: "A128GCM",
             cose.ALG_A256GCM: "A256GCM"}


def diagnostic(payload: bytes) -> str:
    """payload in RFC 8949 section 8 diagnostic notation, one line; ValueError if not one CBOR item."""
    return str(cbor2diag(payload, pretty=False))


def topic_kind(topic: str) -> tuple[str, str]:
    """(kind, unit): kind is 'uplink', 'status', 'command' or '' (not a tcu topic)."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != TOPIC_ROOT:
        return "", ""
    if parts[3] == "up":
        unit, _ = parse_uplink_topic(topic)
        return ("uplink", unit) if unit else ("", "")
    if len(parts) == 4 and parts[3] in ("status", "down"):
        return ("status" if parts[3] == "status" else "command"), parts[2]
    return "", ""


class TapView:
    """Describes messages as dicts; remembers session starts (per unit) to date reports."""

    def __init__(self, e2e_key: bytes | None = None) -> None:
        self.e2e_key = e2e_key
        self._uplinks = UplinkView()

    def describe(self, topic: str, payload: bytes, received_s: float | None = None,
                 retained: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"time": _stamp(time.time() if received_s is None else received_s),
                               "topic": topic, "bytes": len(payload)}
        if retained:
            out["retained"] = True
        try:
            out["diag"] = diagnostic(payload)
        except ValueError as err:
            return _undecodable(out, payload, "not CBOR: %s" % err)
        kind, unit = topic_kind(topic)
        try:
            if kind == "uplink" and is_sealed(payload):
                out["sealed"] = "COSE_Encrypt0, %d B" % len(payload)
                if self.e2e_key is None:
                    out["meaning"] = {"kind": "sealed", "unit": unit, "note": "sealed end to end: --e2e-key opens it"}
                    return out
                payload = open_uplink(payload, self.e2e_key, topic)
                out["opened"] = diagnostic(payload)
            out["meaning"] = self._meaning(kind, unit, topic, payload)
        except (TcuError, ValueError, KeyError, TypeError) as err:  # what a stranger on the broker sends
            return _undecodable(out, payload, "not a valid %s: %s" % (kind or "tcu message", err))
        return out

    def _meaning(self, kind: str, unit: str, topic: str, payload: bytes) -> dict[str, Any]:
        if kind == "uplink":
            _, boot = parse_uplink_topic(topic)
            record = self._uplinks.describe(payload, "%s/%s" % (unit, boot))
            record.pop("bytes", None)
            record["unit"] = unit
            record["kind"] = record.pop("type")
            return record
        if kind == "status":
            return _status(unit, payload)
        if kind == "command":
            return _command(unit, payload)
        return {"kind": "unknown", "note": "not a tcu/v1 topic: shown as CBOR only"}


def _stamp(unix_s: float) -> str:
    return iso_utc(unix_s)[:-1] + ".%03dZ" % int(unix_s % 1 * 1000)


def _undecodable(out: dict[str, Any], payload: bytes, error: str) -> dict[str, Any]:
    out["hex"] = payload.hex()
    out["error"] = error
    return out


def _status(unit: str, payload: bytes) -> dict[str, Any]:
    msg = messages.decode(payload)
    if msg.type != messages.T_STATUS:
        raise ValueError("a %s on the status topic" % messages.TYPE_NAMES[msg.type])
    state = msg.state or 0
    out: dict[str, Any] = {"kind": "status", "unit": unit, "time": iso_utc(msg.time or 0),
                           "state": [name for bit, name in STATE_BITS if state & bit] or ["offline"]}
    if msg.ext:
        names = {messages.RADIO_REG: "registration", messages.RADIO_OPERATOR: "operator",
                 messages.RADIO_RAT: "rat", messages.RADIO_SIGNAL_DBM: "signal_dbm"}
        out.update({names[key]: value for key, value in msg.ext.items()})
    return out


def _command(unit: str, payload: bytes) -> dict[str, Any]:
    envelope = cose.parse(payload)
    command = cmd.decode_command(envelope.payload)
    args = {{cmd.ARG_CASE: "case", cmd.ARG_UNTIL: "until", cmd.ARG_SESSION: "session",
             cmd.ARG_STATUS_INTERVAL: "status_interval"}.get(k, str(k)): v for k, v in command.args.items()}
    return {"kind": "command", "unit": command.unit, "topic_unit": unit,
            "command": cmd.COMMAND_NAMES.get(command.code, str(command.code)), "counter": command.counter,
            "valid": "%s..%s" % (iso_utc(command.not_before), iso_utc(command.not_after)), "args": args,
            "kid": envelope.kid.decode(errors="replace"), "alg": ALG_NAMES.get(envelope.alg, str(envelope.alg)),
            "note": "signature not checked by the tap"}


def format_lines(entry: dict[str, Any]) -> list[str]:
    """The human form: a head line (time, topic, size), the notation, the meaning or the error."""
    retained = " (retained)" if entry.get("retained") else ""
    lines = ["%s %s %d B%s" % (entry["time"], entry["topic"], entry["bytes"], retained)]
    if "diag" in entry:
        lines.append("  cbor: %s" % entry["diag"])
    if "opened" in entry:
        lines.append("  opened: %s" % entry["opened"])
    if "error" in entry:
        lines.append("  hex: %s" % (entry["hex"] or "(empty)"))
        lines.append("  error: %s" % entry["error"])
        return lines
    meaning = dict(entry["meaning"])
    kind, unit = meaning.pop("kind"), meaning.pop("unit", None)
    fields = " ".join("%s=%s%s" % (k, _value(v), UNITS.get(k, "")) for k, v in meaning.items() if v is not None)
    lines.append("  %s%s: %s" % (kind, " " + unit if unit else "", fields))
    return lines


def _value(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, str) and (" " in value or not value):
        return json.dumps(value)
    return str(value)
