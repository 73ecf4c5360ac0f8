"""Golden vectors: the exact bytes of every message kind, for other implementations to test
against. Deterministic: fixed test keys (never use them in production), Ed25519 signatures
(deterministic by design) and, for the sealed uplink only, a fixed IV.

Regenerate with `python -m tcu.tools.golden` (writes protocol/golden/); the tests check that
the committed files equal what the code produces and that each validates against its CDDL rule.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tcu.protocol import commands as cmd
from tcu.protocol import cose, messages, sms

UNIT = "unit-0001"
T = 1_778_745_600  # 2026-05-14T08:00:00Z
TEST_SIGNING_SEED = bytes(range(32))  # the Ed25519 test key; its public key is in index.json
TEST_HMAC_KEY = bytes(range(100, 132))
TEST_E2E_KEY = bytes(range(200, 232))
TEST_IV = bytes(range(12))
BOOT = T  # the example boot number (a fresh outbox starts from the clock's Unix seconds)
# A sealed uplink's external AAD is the full topic it is published on (what units use and
# backends receive with the message), never a prefix of it.
SEALED_TOPIC = "tcu/v1/%s/up/%d" % (UNIT, BOOT)
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "protocol" / "golden"

Vector = tuple[str, bytes, str]  # (CDDL rule, bytes, description)


def golden_msd() -> bytes:
    """The MSD of the crash vectors' first fix (3D, HDOP 0.9), a default [vehicle], no earlier fixes."""
    from tcu.emulator import msd
    from tcu.firmware.fix import MODE_3D, Fix
    from tcu.firmware.msd import MsdValues

    fix = Fix(T * 1000 + 1000, 481374300, 115754900, MODE_3D, 51900, 13900, 4400, 11, 90)
    return msd.encode(MsdValues(1, True, False, fix, []), msd.Vehicle())


def build_vectors() -> dict[str, Vector]:
    fixes = [(0, 481374300, 115754900, 50, 22), (2, 481375210, 115756010, 52, 22), (4, 481376150, 115757090, 53, 23)]
    report = messages.encode_report(2, 1, 1, 0, 481374300, 115754900, 50, 22)
    stolen = cmd.Command(UNIT, 42, T - 60, T + 300, cmd.CMD_TRACK_STOLEN, {cmd.ARG_CASE: "police-2026-0042",
                                                                         cmd.ARG_UNTIL: T + 86400})
    cancel = cmd.Command(UNIT, 43, T - 60, T + 300, cmd.CMD_CANCEL, {cmd.ARG_SESSION: 3})
    signer = Ed25519PrivateKey.from_private_bytes(TEST_SIGNING_SEED)
    sealed = cose.encrypt0(report, cose.ALG_A256GCM, TEST_IV, SEALED_TOPIC.encode(),
                           lambda iv, plain, aad: AESGCM(TEST_E2E_KEY).encrypt(iv, plain, aad))
    return {
        "status": ("uplink", messages.encode_status(T, messages.STATE_ONLINE), "online, dormant: no position"),
        "status-radio": ("uplink", messages.encode_status(T, messages.STATE_ONLINE, {
            messages.RADIO_REG: 1, messages.RADIO_OPERATOR: "TCU Test Net", messages.RADIO_RAT: "LTE",
            messages.RADIO_SIGNAL_DBM: -75}), "online, with its modem's registration, operator, RAT and signal"),
        "sms-envelope": ("sms-envelope", sms.encode_envelope(UNIT, 3, [messages.encode_session_start(1, 1, 1, T, 1),
                                                                       messages.encode_report(2, 1, 1, 1, 481374300,
                                                                                              115754900, 50, 22)]),
                         "the SMS fallback of a crash: its session start and first report, boot 3"),
        "session-start-crash": ("uplink", messages.encode_session_start(1, 1, 1, T, 1), "crash session 1 starts"),
        "session-start-crash-msd": ("uplink", messages.encode_session_start(2, 1, 1, T, 1, msd=golden_msd()),
                                    "crash session 1's start again, with its first eCall MSD (EN 15722 v2)"),
        "session-start-sos-test": ("uplink", messages.encode_session_start(1, 2, 3, T, 3, test=True),
                                   "a test call: sos session 2 starts (tcu trigger sos --test)"),
        "report-crash": ("uplink", messages.encode_report(2, 1, 1, 1, 481374300, 115754900, 50, 22,
                                                          {1: 519, 2: 11, 3: 9, 4: 3}), "crash report, all fields"),
        "report": ("uplink", report, "a report with time, position, speed, course, purpose, sequence"),
        "report-combined": ("uplink", messages.encode_report(9, 4, 1, 12, 481374300, 115754900, 50, 22,
                                                             {1: 519, 4: 3, 5: [3]}),
                            "crash session 4 and theft session 3 overlap: one report serves both"),
        "report-position-only": ("uplink", messages.encode_report(3, 2, 4, 5, 481374300, 115754900, motion=False),
                                 "roadside assistance: position only"),
        "batch": ("uplink", messages.encode_batch(4, 1, 1, fixes), "three crash-tracking fixes, delta coded"),
        "session-end": ("uplink", messages.encode_session_end(5, 1, T + 600, 2), "crash session 1 hit its time bound"),
        "session-start-stolen": ("uplink", messages.encode_session_start(6, 3, 6, T, 6, "police-2026-0042"),
                                 "stolen-vehicle tracking starts, with its case"),
        "session-start-system-clock": ("uplink", messages.encode_session_start(
            1, 1, 1, T, 1, time_source=messages.TIME_SYSTEM),
            "crash session 1 starts, stamped by an unsynchronised clock"),
        "session-end-ntp": ("uplink", messages.encode_session_end(5, 1, T + 600, 2, messages.TIME_NTP),
                            "crash session 1 hit its time bound, stamped by an NTP-synchronised clock"),
        "command-provisional": ("uplink", messages.encode_command_response(7, 42, messages.RESULT_PROVISIONAL, 3),
                                "command 42 started session 3, its window unchecked (untrusted time)"),
        "command-accepted": ("uplink", messages.encode_command_response(7, 42, 0, 3), "command 42 started session 3"),
        "command-rejected": ("uplink", messages.encode_command_response(8, 42, 1, 7), "command 42 replayed"),
        "command-track-stolen": ("command", cmd.encode_command(stolen), "the payload inside the COSE envelopes"),
        "downlink-sign1": ("downlink", cmd.seal_command(stolen, b"backend-ed", cose.ALG_EDDSA, None, signer.sign),
                           "track-stolen, COSE_Sign1 EdDSA, AAD = tcu/v1/unit-0001/down"),
        "downlink-mac0": ("downlink", cmd.seal_command(cancel, b"backend-mac", cose.ALG_HMAC_256_256, TEST_HMAC_KEY),
                          "cancel session 3, COSE_Mac0 HMAC 256/256, AAD = tcu/v1/unit-0001/down"),
        "sealed-report": ("sealed-uplink", sealed, "the report, COSE_Encrypt0 A256GCM, published on %s; external "
                          "AAD = that topic in full (open a received one with the topic it came on)" % SEALED_TOPIC),
    }


def main() -> int:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, (rule, data, description) in build_vectors().items():
        (GOLDEN_DIR / (name + ".cbor")).write_bytes(data)
        index[name] = {"rule": rule, "hex": data.hex(), "bytes": len(data), "description": description}
        if rule == "sealed-uplink":
            index[name]["aad"] = SEALED_TOPIC  # the UTF-8 topic, the Enc_structure's external_aad
    public = Ed25519PrivateKey.from_private_bytes(TEST_SIGNING_SEED).public_key().public_bytes_raw()
    keys = {"ed25519_public": public.hex(), "hmac": TEST_HMAC_KEY.hex(), "aes256gcm": TEST_E2E_KEY.hex(),
            "iv": TEST_IV.hex(), "unit": UNIT}
    (GOLDEN_DIR / "index.json").write_text(json.dumps({"test_keys": keys, "vectors": index}, indent=1) + "\n")
    print("wrote %d vectors to %s" % (len(index), GOLDEN_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
