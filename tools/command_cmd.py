"""`tcu backend keygen` and `tcu backend command ...`: the backend's side of downlink commands.

Commands are COSE_Sign1 (Ed25519) signed with the backend's private key, bound to the unit
and its downlink topic, valid for a short window, with a counter that only grows (Unix
milliseconds, so restarting the backend never reuses one), and published at QoS 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tcu.emulator.crypto import load_private_key
from tcu.emulator.uplink import TlsOptions, open_client
from tcu.firmware.errors import LinkError, UsageError
from tcu.protocol import commands as cmd
from tcu.protocol import cose
from tcu.tools.command_wait import DEFAULT_WAIT_S, EXIT_NO_ANSWER, AnswerWatch, describe, no_answer
from tcu.tools.tls_options import add_tls_arguments, broker_auth, check_link

KID = b"backend"  # the key id `tcu run --backend-key` trusts
VALID_FOR_S = 300  # a command not delivered within 5 minutes expires
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def duration_s(text: str) -> int:
    """'90s', '15m', '24h', '3d' -> seconds."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError("not a duration like 90s, 15m, 24h or 3d: %r" % text)
    return int(float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)])


def wait_s(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= VALID_FOR_S:
        raise argparse.ArgumentTypeError("--wait SECONDS: a number above 0 and at most %d (the command's "
                                         "validity), not %r" % (VALID_FOR_S, text))
    return seconds


def register_verbs(backend: argparse.ArgumentParser) -> None:
    verbs = backend.add_subparsers(dest="verb", metavar="[keygen|command]")
    keygen = verbs.add_parser("keygen", help="make the backend's Ed25519 key pair (or, --e2e, the end-to-end key)")
    keygen.add_argument("--out", default=".", metavar="DIR", help="writes DIR/backend.key and DIR/backend.pub")
    keygen.add_argument("--e2e", action="store_true",
                        help="write DIR/e2e.key instead: a random AES-256 key as 64 hex digits and a newline, "
                             "for tcu run/replay --e2e-key and tcu backend --e2e-key")
    keygen.set_defaults(run=run_keygen)
    command = verbs.add_parser("command", help="send a signed command to a unit")
    command.add_argument("what", choices=("lawful-request", "track-stolen", "cancel", "locate-now", "send-msd"))
    command.add_argument("--broker", required=True, help="mqtt:// or mqtts://")
    command.add_argument("--unit", required=True, help="the unit's id")
    command.add_argument("--key", default="backend.key", metavar="PEM", help="the backend's private key")
    command.add_argument("--case", help="the case reference (lawful-request, track-stolen)")
    command.add_argument("--for", dest="duration", type=duration_s, metavar="DURATION",
                         help="how long tracking lasts: 90s, 15m, 24h (lawful-request, track-stolen)")
    command.add_argument("--hours", type=float, help="the same as --for in hours")
    add_tls_arguments(command)  # mqtts:// brokers: the backend's own CA, certificate and key
    command.add_argument("--session", type=int, help="the session (cancel, locate-now, send-msd)")
    command.add_argument("--wait", nargs="?", type=wait_s, const=DEFAULT_WAIT_S, metavar="SECONDS",
                         help="wait for the unit's answer (default %g s) and print it: exit 0 accepted, "
                              "1 rejected, 3 no answer in time" % DEFAULT_WAIT_S)
    command.set_defaults(run=run_command)


def _create_secret(path: Path, data: bytes, what: str) -> None:
    """Created owner-only (no moment readable by others) and never over an existing key."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError("%s exists: not overwriting %s" % (path, what)) from None
    except OSError as err:
        raise UsageError("cannot write %s: %s" % (path, err.strerror)) from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def run_keygen(args: argparse.Namespace) -> int:
    if args.e2e:
        path = Path(args.out) / "e2e.key"
        _create_secret(path, os.urandom(32).hex().encode() + b"\n", "an end-to-end key")
        print("wrote %s (keep it secret): give it to the unit and to the backend, --e2e-key %s" % (path, path))
        return 0
    out = Path(args.out)
    private, public = out / "backend.key", out / "backend.pub"
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created owner-only (no moment readable by others) and never over an existing key.
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError("%s exists: not overwriting a backend key" % private) from None
    except OSError as err:
        raise UsageError("cannot write %s: %s" % (private, err.strerror)) from None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    print("wrote %s (keep it secret) and %s (give it to the units: tcu run --backend-key)" % (private, public))
    return 0


def build_command(args: argparse.Namespace, now_s: int) -> cmd.Command:
    code = {"lawful-request": cmd.CMD_LAWFUL_REQUEST, "track-stolen": cmd.CMD_TRACK_STOLEN,
            "cancel": cmd.CMD_CANCEL, "locate-now": cmd.CMD_LOCATE_NOW, "send-msd": cmd.CMD_SEND_MSD}[args.what]
    if code in (cmd.CMD_LAWFUL_REQUEST, cmd.CMD_TRACK_STOLEN):
        seconds = args.duration or (int(args.hours * 3600) if args.hours else None)
        if not args.case or not seconds:
            raise UsageError("%s needs --case REF and --for DURATION (or --hours)" % args.what)
        if len(args.case) > 64:
            raise UsageError("--case: at most 64 characters")
        body = {cmd.ARG_CASE: args.case, cmd.ARG_UNTIL: now_s + seconds}
    else:
        if args.session is None:
            raise UsageError("%s needs --session N (see tcu status on the unit)" % args.what)
        body = {cmd.ARG_SESSION: args.session}
    counter = int(time.time() * 1000)  # only grows, across backend restarts too
    return cmd.Command(args.unit, counter, now_s - 30, now_s + VALID_FOR_S, code, body)


def run_command(args: argparse.Namespace) -> int:
    tls = check_link(args.broker, args)
    key = load_private_key(args.key)
    command = build_command(args, int(time.time()))
    data = cmd.seal_command(command, KID, cose.ALG_EDDSA, None, key.sign)
    if args.wait is not None:
        return _send_and_wait(args, command, data, tls)
    client = open_client(args.broker, "tcu-backend-command-%d" % command.counter, tls=tls,
                         auth=broker_auth(args))
    try:
        info = client.publish(cmd.downlink_topic(args.unit), data, qos=1)
        info.wait_for_publish(10)
        if not info.is_published():
            raise LinkError("the broker did not acknowledge the command")
    finally:
        client.disconnect()
        client.loop_stop()
    print(_sent_line(args, command) + "; the unit answers on its uplink (--wait prints its answer)")
    return 0


def _sent_line(args: argparse.Namespace, command: cmd.Command) -> str:
    return "sent %s to %s (counter %d, valid until %s)" % (
        args.what, args.unit, command.counter, time.strftime("%H:%M:%SZ", time.gmtime(command.not_after)))


def _send_and_wait(args: argparse.Namespace, command: cmd.Command, data: bytes, tls: TlsOptions | None) -> int:
    """Subscribed to the unit's answers first, then published: the answer cannot be missed."""
    watch = AnswerWatch(args.broker, args.unit, "tcu-backend-command-%d" % command.counter,
                        tls, broker_auth(args))
    try:
        watch.publish(cmd.downlink_topic(args.unit), data)
        print(_sent_line(args, command) + "; waiting up to %g s for its answer" % args.wait, flush=True)
        answer = watch.wait(command.counter, args.wait)
    finally:
        watch.close()
    if answer is None:
        print("tcu backend command: %s" % no_answer(watch, command.counter, args.wait, command.not_after),
              file=sys.stderr)
        return EXIT_NO_ANSWER
    line, status = describe(answer, args.what)
    print(line, file=sys.stderr if status else sys.stdout)
    return status
