"""The AT command layer's sans-I/O core: bytes in, responses and unsolicited results out.

Like h11, it holds no port and reads no clock: the adapter (hal/modem_port.py) writes what
`send()` returns, feeds what the modem said to `feed(data, now)`, and calls `timeout(now)`
when `deadline()` has passed. One command at a time (V.250 allows no pipelining).

What it understands (3GPP TS 27.007/27.005, and the Quectel and SIMCom AT manuals):
- the echo of the command line (ATE1, the modems' default), skipped;
- final results: OK and CONNECT end a command well; ERROR, +CME ERROR: n, +CMS ERROR: n,
  NO CARRIER, BUSY, NO ANSWER, NO DIALTONE end it badly (named: "+CME ERROR: 10 (SIM not
  inserted)"), as a CommandError carried by a Failure event;
- intermediate lines between the echo and the final result;
- unsolicited result codes anywhere, even in the middle of a response: a line with a known
  URC prefix that is not what the pending command asked for (see `is_response`);
- the SMS prompt "> " (no line end), answered with the command's payload and Ctrl-Z;
- a per-command timeout (TIMEOUTS_S, from the manuals' "maximum response time"): a modem
  that stops answering yields a Failure carrying an AtTimeout that says what it waited for;
- garbage: undecodable bytes, over-long lines and stray finals come out as Noise events,
  never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcu.firmware.errors import TcuError

MAX_LINE = 2048  # a modem line longer than this is garbage (the longest real one, +COPS=?, ~1 kB)
CTRL_Z = b"\x1a"

# 3GPP TS 27.007 9.2 (+CME ERROR) and the vendors' additions used by the unit.
CME_ERRORS = {
    0: "phone failure", 1: "no connection to phone", 3: "operation not allowed", 4: "operation not supported",
    5: "PH-SIM PIN required", 10: "SIM not inserted", 11: "SIM PIN required", 12: "SIM PUK required",
    13: "SIM failure", 14: "SIM busy", 15: "SIM wrong", 16: "incorrect password", 20: "memory full",
    21: "invalid index", 22: "not found", 23: "memory failure", 30: "no network service",
    31: "network timeout", 32: "network not allowed - emergency calls only", 100: "unknown",
    # Quectel GNSS (Quectel GNSS AT Commands Manual, 2.3) and SIMCom GPS errors
    501: "invalid parameter", 502: "operation not supported", 503: "GNSS subsystem busy",
    504: "session is ongoing", 505: "session not active", 506: "operation timeout",
    516: "not fixed now", 549: "unknown error",
}
# 3GPP TS 27.005 3.2.5 (+CMS ERROR).
CMS_ERRORS = {
    300: "ME failure", 301: "SMS service of ME reserved", 302: "operation not allowed",
    303: "operation not supported", 304: "invalid PDU mode parameter", 305: "invalid text mode parameter",
    310: "SIM not inserted", 311: "SIM PIN required", 313: "SIM failure", 314: "SIM busy",
    320: "memory failure", 321: "invalid memory index", 322: "memory full", 330: "SMSC address unknown",
    331: "no network service", 332: "network timeout", 340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}
OK_FINALS = ("OK", "CONNECT")
ERROR_FINALS = ("ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")

# Unsolicited result codes: prefixes (a line starting with one of these) and whole lines.
URC_PREFIXES = ("+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+QIND:", "+CMTI:", "+CDSI:", "+CPIN:",
                "+QUSIM:", "+CFUN:", "+CRING:", "+CLIP:", "+QIURC:", "+CGEV:", "+QGPSURC:", "+CTZV:",
                "+CTZE:", "+QNTP:", "+QSTK:", "+CNMP:")
URC_LINES = ("RING", "RDY", "POWERED DOWN", "NORMAL POWER DOWN", "SMS DONE", "PB DONE", "SMS Ready",
             "Call Ready", "START")

# Maximum response times from the manuals (Quectel EC25/EG25-G AT Commands Manual; SIMCom
# SIM7500/SIM7600 Series AT Command Manual); anything else: DEFAULT_TIMEOUT_S.
TIMEOUTS_S = {
    "AT+COPS=?": 180.0, "AT+COPS": 180.0, "AT+CMGS": 120.0, "AT+CMSS": 120.0, "AT+CFUN": 15.0,
    "AT+CPIN": 5.0, "AT+CGATT": 140.0, "AT+CGACT": 150.0, "AT+QGPS": 1.0, "AT+QGPSEND": 1.0,
    "AT+CGPS": 9.0, "AT+CMGD": 5.0, "AT+CMGL": 5.0, "AT+CMGR": 5.0, "AT+QPOWD": 60.0, "AT+CPOF": 60.0,
    "AT+CLCK": 5.0, "AT+CUSD": 120.0, "AT+QENG": 1.0, "AT+CPSI": 1.0,
}
# 300 ms in the manuals, for a USB modem on an idle bench; a loaded Pi needs headroom.
DEFAULT_TIMEOUT_S = 2.0


class ModemError(TcuError):
    """The modem (or the AT layer) cannot do what was asked."""


class CommandError(ModemError):
    """A command ended with an error result; code is the CME/CMS number when there is one."""

    def __init__(self, command: str, final: str, code: int | None = None, name: str = "") -> None:
        self.command, self.final, self.code, self.name = command, final, code, name
        super().__init__("%s: %s%s" % (command, final, " (%s)" % name if name else ""))


class AtTimeout(ModemError):
    """The modem did not finish a command within its maximum response time."""


class Busy(ModemError):
    """A command was sent while another one is still pending."""


@dataclass(frozen=True)
class Urc:
    line: str


@dataclass(frozen=True)
class Reply:
    command: str
    lines: tuple[str, ...]
    final: str = "OK"


@dataclass(frozen=True)
class Failure:
    command: str
    error: ModemError
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Transmit:
    """Bytes to write now: the payload after the "> " prompt."""

    data: bytes


@dataclass(frozen=True)
class Noise:
    """Something that is neither a response nor a known URC (logged, counted, never raised)."""

    line: str
    why: str


Event = Urc | Reply | Failure | Transmit | Noise


def timeout_for(command: str) -> float:
    """The manual's maximum response time for a command line ("AT+COPS=?" before "AT+COPS")."""
    text = command.strip().upper()
    if text in TIMEOUTS_S:
        return TIMEOUTS_S[text]
    name = text.split("=")[0].rstrip("?")
    return TIMEOUTS_S.get(name, DEFAULT_TIMEOUT_S)


def parse_error(command: str, final: str) -> CommandError:
    """A CommandError from an error final; a CME/CMS number is named from 27.007/27.005."""
    for prefix, table in (("+CME ERROR:", CME_ERRORS), ("+CMS ERROR:", CMS_ERRORS)):
        if final.startswith(prefix):
            arg = final[len(prefix):].strip()
            if arg.isdigit():
                return CommandError(command, final, int(arg), table.get(int(arg), "not in 27.007/27.005"))
            return CommandError(command, final, None, "")  # verbose mode (+CMEE=2): the text says it
    return CommandError(command, final)


def is_final(line: str) -> bool:
    return (line in OK_FINALS or line in ERROR_FINALS or line.startswith(("+CME ERROR:", "+CMS ERROR:"))
            or line.startswith("CONNECT "))


def is_urc(line: str) -> bool:
    return line in URC_LINES or line.startswith(URC_PREFIXES)


def is_response(command: str, line: str) -> bool:
    """Whether a URC-looking line is the pending command's own response.

    +CREG?'s response is "+CREG: <n>,<stat>[,...]" and the URC "+CREG: <stat>[,<lac>,...]":
    a response has a second, unquoted field (ModemManager's mm-modem-helpers does the same).
    """
    name = command.strip().upper()[2:].split("=")[0].rstrip("?")  # "+CREG"
    if not name or not line.startswith(name + ":"):
        return False
    if name in ("+CREG", "+CGREG", "+CEREG", "+C5GREG"):
        if not command.rstrip().endswith("?"):
            return False  # AT+CREG=2 has no response line: anything is a URC
        fields = line.split(":", 1)[1].split(",")
        return len(fields) >= 2 and fields[1].strip().isdigit()
    return True


@dataclass
class _Pending:
    command: str
    deadline: float
    payload: bytes | None
    lines: list[str] = field(default_factory=list)
    echoed: bool = False
    prompted: bool = False


class AtConnection:
    """One modem port's AT conversation. send() -> bytes to write; feed() -> events."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: _Pending | None = None

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def deadline(self) -> float | None:
        """When timeout() must be called (monotonic seconds), or None when idle."""
        return None if self._pending is None else self._pending.deadline

    def send(self, command: str, now: float, timeout_s: float | None = None, payload: bytes | None = None) -> bytes:
        """Start a command ("AT+CSQ"); payload: what to send after the "> " prompt (AT+CMGS)."""
        if self._pending is not None:
            raise Busy("%s while %s is pending: one command at a time" % (command, self._pending.command))
        if not command.upper().startswith("AT") or "\r" in command or "\n" in command:
            raise ModemError("not an AT command line: %r" % command[:40])
        wait = timeout_for(command) if timeout_s is None else timeout_s
        self._pending = _Pending(command, now + wait, payload)
        return command.encode("ascii", "replace") + b"\r"

    def timeout(self, now: float) -> list[Event]:
        """A Failure if the pending command's deadline has passed (its lines so far kept)."""
        pending = self._pending
        if pending is None or now < pending.deadline:
            return []
        self._pending = None
        said = "%d line(s) but no final result" % len(pending.lines) if pending.lines else "nothing"
        if pending.payload is not None and not pending.prompted:
            said += ", no \"> \" prompt"
        return [Failure(pending.command, AtTimeout("modem did not answer %s within its %.0f s limit (it said %s)"
                                                   % (pending.command, timeout_for(pending.command), said)),
                        tuple(pending.lines))]

    def reset(self) -> list[Event]:
        """The port went away (modem reset): a pending command fails now."""
        self._buffer.clear()
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        return [Failure(pending.command, ModemError("the modem port closed during %s" % pending.command))]

    def feed(self, data: bytes, now: float) -> list[Event]:
        """Bytes from the modem, split anywhere; the events they complete."""
        events: list[Event] = []
        self._buffer += data
        while True:
            if self._prompt_waiting():
                assert self._pending is not None and self._pending.payload is not None
                del self._buffer[:self._buffer.index(b">") + 2]
                self._pending.prompted = True
                events.append(Transmit(self._pending.payload + CTRL_Z))
                continue
            end = _line_end(self._buffer)
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    events.append(Noise(_text(self._buffer[:80]), "line over %d bytes, dropped" % MAX_LINE))
                    self._buffer.clear()
                return events
            raw = bytes(self._buffer[:end])
            del self._buffer[:end + 1]
            line = _text(raw).strip()
            if line:
                self._line(line, events)

    def _prompt_waiting(self) -> bool:
        pending = self._pending
        if pending is None or pending.payload is None or pending.prompted:
            return False
        stripped = bytes(self._buffer).lstrip(b"\r\n")
        return stripped.startswith(b"> ")

    def _line(self, line: str, events: list[Event]) -> None:
        pending = self._pending
        if pending is None:
            if is_urc(line):
                events.append(Urc(line))
            else:
                events.append(Noise(line, "final result with no command pending" if is_final(line)
                                    else "unsolicited line of no known kind"))
            return
        if not pending.echoed and not pending.lines and line == pending.command:
            pending.echoed = True
            return
        if is_final(line):
            self._pending = None
            if line in OK_FINALS or line.startswith("CONNECT"):
                events.append(Reply(pending.command, tuple(pending.lines), line))
            else:
                events.append(Failure(pending.command, parse_error(pending.command, line), tuple(pending.lines)))
        elif is_urc(line) and not is_response(pending.command, line):
            events.append(Urc(line))
        elif len(pending.lines) >= 256:
            events.append(Noise(line[:80], "over 256 lines in one response, dropped"))
        else:
            pending.lines.append(line)


def _line_end(buffer: bytearray) -> int:
    """Index of the first CR or LF (modems end lines with CR LF; some send a bare CR)."""
    cr, lf = buffer.find(b"\r"), buffer.find(b"\n")
    if cr < 0:
        return lf
    return cr if lf < 0 else min(cr, lf)


def _text(raw: bytes | bytearray) -> str:
    """A modem line as text: ASCII in practice; anything else (a wrong baud rate) kept visible."""
    return bytes(raw).decode("ascii", "backslashreplace")
