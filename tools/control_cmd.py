"""`tcu trigger`, `tcu status` and `tcu reload`: the tester's CLI on a running unit's control socket.

The hot path of a tester's script, so it imports sys, os and _socket and nothing else (no
argparse, no json, hence no re or enum; tests/test_control_client.py): the request line is written
here, the unit answers with the very lines to print in a text frame (emulator/control_text.py),
and the client copies them out. A unit that answers a JSON line (older than the text frames)
is read through tools/control_json.py instead. README: "Spawn time".
"""

# No `from __future__ import annotations` (it imports the __future__ module at run time): the
# annotations that name argparse are strings.
import _socket  # socket.py's wrappers (and the enum module they import) cost more than this whole request
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time: `tcu trigger` starts as fast as it can
    import argparse
    from types import SimpleNamespace

    from tcu.firmware.errors import LinkError, UsageError
else:
    SimpleNamespace = type(sys.implementation)  # as types.py defines it, without importing types


def usage_error(message: str) -> "UsageError":
    """A UsageError; tcu.firmware.errors is loaded only on the way to a failure."""
    from tcu.firmware.errors import UsageError

    return UsageError(message)


def link_error(message: str) -> "LinkError":
    from tcu.firmware.errors import LinkError

    return LinkError(message)

DEFAULT_STATE = "tcu-state"
# The local triggers' names (firmware/services.py TRIGGERS_BY_NAME, which this module does not
# import: tests/test_control_client.py keeps the two equal).
KINDS = ("assist", "crash", "roadside", "sos", "theft")


def default_control() -> str:
    return os.environ.get("TCU_CONTROL") or os.path.join(os.environ.get("TCU_STATE", DEFAULT_STATE), "control.sock")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def json_string(text: str) -> str:
    """text as a JSON string (RFC 8259: quote, backslash and control characters escaped)."""
    return '"%s"' % "".join(_ESCAPES.get(c) or (c if c >= " " else "\\u%04x" % ord(c)) for c in text)


def request_line(fields: dict[str, str | bool]) -> bytes:
    """One JSON object of string and boolean fields, and its newline."""
    members = ["%s: %s" % (json_string(key), json_string(value) if isinstance(value, str) else
                           "true" if value else "false") for key, value in fields.items()]
    return ("{%s}\n" % ", ".join(members)).encode()


def exchange(path: str, line: bytes, timeout_s: float) -> bytes:
    """Send line to the unit at path; its whole answer (a text frame or a JSON line), or LinkError."""
    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(line)
            data = b""
            while not _complete(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            sock.close()
    except (FileNotFoundError, ConnectionRefusedError):
        raise link_error("no unit is listening on %s (is `tcu run` running? --control or TCU_CONTROL)" % path) from None
    except OSError as err:
        raise link_error("the unit's control socket %s: %s" % (path, err.strerror or err)) from None
    return data


def _complete(data: bytes) -> bool:
    header, newline, body = data.partition(b"\n")
    if not newline:
        return False
    if not header.startswith(b"text "):
        return data.endswith(b"\n")  # a JSON line
    length = header.rsplit(b" ", 1)[-1]
    return not length.isdigit() or len(body) >= int(length)


def answer_of(path: str, fields: dict[str, str | bool], timeout_s: float = 5.0) -> tuple[int, str, str]:
    """(exit status, "out" or "err", the lines to print) for one request to the unit at path."""
    data = exchange(path, request_line(fields), timeout_s)
    if data.startswith(b"{"):  # a unit older than the text frames
        from tcu.tools.control_json import rendered

        return rendered(path, fields, data, timeout_s)
    header, _, body = data.partition(b"\n")
    words = header.split(b" ")
    if len(words) != 4 or words[0] != b"text" or not words[1].isdigit() or words[2] not in (b"out", b"err"):
        raise link_error("the unit at %s gave no answer" % path)
    return int(words[1]), words[2].decode(), body.decode()


def say(path: str, fields: dict[str, str | bool], timeout_s: float = 5.0) -> int:
    """Ask, print the unit's lines where it says, return its exit status."""
    code, stream, text = answer_of(path, fields, timeout_s)
    (sys.stdout if stream == "out" else sys.stderr).write(text)
    return code


def control_of(args: "argparse.Namespace | SimpleNamespace") -> str:
    if args.control and args.state:
        raise usage_error("give --control PATH or --state DIR, not both")
    return str(args.control or (os.path.join(args.state, "control.sock") if args.state else default_control()))


_FAST_OPTIONS = ("--control", "--state")


def fast_args(argv: list[str]) -> SimpleNamespace | None:
    """`tcu trigger ...`, `tcu status ...`, `tcu reload ...` parsed without argparse (its import is
    a large part of the start-up time); None for anything else (help, a typo, another option):
    argparse then."""
    command, rest = argv[0], argv[1:]
    values: dict[str, object] = {"command": command, "control": None, "state": None, "json": False, "test": False}
    words = []
    while rest:
        arg = rest.pop(0)
        name, eq, value = arg.partition("=")
        if name in _FAST_OPTIONS and (eq or rest):
            values[name[2:]] = value if eq else rest.pop(0)
        elif arg == "--json" and command == "status":
            values["json"] = True
        elif arg == "--test" and command == "trigger":
            values["test"] = True
        elif arg.startswith("-") or command != "trigger":
            return None
        else:
            words.append(arg)
    if command == "trigger":
        return SimpleNamespace(words=words, run=run_trigger, **values) if words else None
    run = {"status": run_status, "reload": run_reload}.get(command)
    return None if run is None else SimpleNamespace(run=run, **values)


def parse_words(words: list[str]) -> tuple[str, str]:
    """['crash'] -> ('trigger', 'crash'); ['clear', 'theft'] -> ('clear', 'theft')."""
    if len(words) == 1 and words[0] in ("clear", "cancel"):
        raise usage_error("`tcu trigger %s` needs the trigger to %s: tcu trigger %s KIND (KIND: %s)" % (
            words[0], words[0], words[0], ", ".join(KINDS)))
    if len(words) == 1:
        op, kind = "trigger", words[0]
    elif len(words) == 2 and words[0] in ("clear", "cancel"):
        op, kind = words
    else:
        raise usage_error("expected `tcu trigger KIND`, `tcu trigger clear KIND` or `tcu trigger cancel KIND`")
    if kind not in KINDS:  # only now the service table, for its specific message
        from tcu.firmware.services import trigger_code

        trigger_code(kind)
        raise usage_error("unknown trigger %r (known: %s)" % (kind, ", ".join(KINDS)))
    return op, kind


def run_trigger(args: "argparse.Namespace | SimpleNamespace") -> int:
    if getattr(args, "at", None) or getattr(args, "script", None) or getattr(args, "unschedule", None):
        from tcu.tools.trigger_schedule import run_scheduled  # argparse path only: fast_args has none of these

        return run_scheduled(args)  # type: ignore[arg-type]
    op, kind = parse_words(args.words)
    fields: dict[str, str | bool] = {"op": op, "kind": kind, "format": "text"}
    if args.test:
        if op != "trigger" or kind not in ("crash", "sos"):
            raise usage_error("--test: only `tcu trigger crash --test` or `tcu trigger sos --test`")
        fields["test"] = True
    return say(control_of(args), fields)


def run_status(args: "argparse.Namespace | SimpleNamespace") -> int:
    return say(control_of(args), {"op": "status", "format": "json" if args.json else "text"})


def run_reload(args: "argparse.Namespace | SimpleNamespace") -> int:
    """What the reload applied and what waits for a restart; exit 1 if it was refused."""
    return say(control_of(args), {"op": "reload", "format": "text"}, timeout_s=30.0)
