"""The AT core (hal/at.py): responses, finals, URCs anywhere, the SMS prompt, timeouts, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.hal.at import (
    AtConnection,
    AtTimeout,
    Busy,
    CommandError,
    Failure,
    ModemError,
    Noise,
    Reply,
    Transmit,
    Urc,
    timeout_for,
)


def run(conn: AtConnection, data: bytes, now: float = 0.0) -> list[object]:
    return list(conn.feed(data, now))


def test_echo_intermediate_and_ok() -> None:
    conn = AtConnection()
    assert conn.send("AT+CSQ", 0.0) == b"AT+CSQ\r"
    events = run(conn, b"AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events == [Reply("AT+CSQ", ("+CSQ: 20,99",), "OK")]
    assert not conn.busy


def test_cme_and_cms_errors_are_named() -> None:
    conn = AtConnection()
    conn.send("AT+CPIN?", 0.0)
    [failure] = run(conn, b"\r\n+CME ERROR: 10\r\n")
    assert isinstance(failure, Failure) and isinstance(failure.error, CommandError)
    assert failure.error.code == 10 and "SIM not inserted" in str(failure.error)
    conn.send("AT+CMGS=20", 0.0, payload=b"00")
    [_, failure] = run(conn, b"\r\n> \r\n+CMS ERROR: 331\r\n")
    assert isinstance(failure, Failure) and "no network service" in str(failure.error)
    conn.send("AT+QGPS=1", 0.0)
    [failure] = run(conn, b"\r\n+CME ERROR: 504\r\n")
    assert isinstance(failure, Failure) and "session is ongoing" in str(failure.error)


def test_urc_inside_a_response_and_creg_disambiguation() -> None:
    conn = AtConnection()
    conn.send("AT+CREG?", 0.0)
    events = run(conn, b"AT+CREG?\r\r\n+CREG: 5,\"1A2B\",\"01C3D4E5\",7\r\nRING\r\n"
                       b"+CREG: 2,1,\"1A2B\",\"01C3D4E5\",7\r\n+QIND: SMS DONE\r\n\r\nOK\r\n")
    assert events == [Urc('+CREG: 5,"1A2B","01C3D4E5",7'), Urc("RING"),
                      Urc("+QIND: SMS DONE"), Reply("AT+CREG?", ('+CREG: 2,1,"1A2B","01C3D4E5",7',))]


def test_idle_urcs_and_noise() -> None:
    conn = AtConnection()
    events = run(conn, b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+CMTI: \"SM\",3\r\nOK\r\nblah\r\n")
    assert [type(e) for e in events] == [Urc, Urc, Urc, Urc, Noise, Noise]


def test_sms_prompt_sends_payload_with_ctrl_z() -> None:
    conn = AtConnection()
    conn.send("AT+CMGS=18", 0.0, payload=b"0011000B91")
    events = run(conn, b"AT+CMGS=18\r\r\n> ")
    assert events == [Transmit(b"0011000B91\x1a")]
    assert run(conn, b"\r\n+CMGS: 7\r\n\r\nOK\r\n") == [Reply("AT+CMGS=18", ("+CMGS: 7",))]


def test_one_command_at_a_time() -> None:
    conn = AtConnection()
    conn.send("AT", 0.0)
    with pytest.raises(Busy):
        conn.send("AT+CSQ", 0.0)


def test_manual_timeouts() -> None:
    assert timeout_for("AT+COPS=?") == 180.0
    assert timeout_for("AT+CMGS=23") == 120.0
    assert timeout_for("AT+CSQ") == 2.0


def test_a_silent_modem_times_out_with_a_clear_message() -> None:
    conn = AtConnection()
    conn.send("AT+COPS=?", 10.0)
    assert conn.deadline() == 190.0
    assert conn.timeout(189.9) == []
    [failure] = conn.timeout(190.0)
    assert isinstance(failure, Failure) and isinstance(failure.error, AtTimeout)
    assert str(failure.error) == "modem did not answer AT+COPS=? within its 180 s limit (it said nothing)"
    assert not conn.busy  # the next command can go
    conn.send("AT", 191.0)


def test_overlong_line_is_noise() -> None:
    conn = AtConnection()
    events = run(conn, b"x" * 5000)
    assert len(events) == 1 and isinstance(events[0], Noise)


# -- properties ---------------------------------------------------------------------------
URCS = ["RING", "RDY", "+CREG: 1", '+CEREG: 5,"1A2B","01C3D4E5",7', "+QIND: SMS DONE", '+CMTI: "SM",1',
        "POWERED DOWN"]  # (not "+CPIN: READY": during AT+CPIN? it is the answer, as on a real modem)
RESPONSES = [("AT+CSQ", ["+CSQ: 17,99"], "OK"), ("ATI", ["Quectel", "EG25", "Revision: EG25GGBR07A08M2G"], "OK"),
             ("AT+CREG?", ["+CREG: 2,1,\"1A2B\",\"01C3D4E5\",7"], "OK"), ("AT+CPIN?", [], "+CME ERROR: 10"),
             ("AT+COPS?", ['+COPS: 0,0,"Operator",7'], "OK"), ("AT+CFUN=1", [], "ERROR")]


@st.composite
def conversation(draw: st.DrawFn) -> tuple[list[tuple[str, list[str], str]], list[bytes], list[str]]:
    """Commands with their responses, URCs inserted at random line positions, the bytes split anywhere."""
    script = draw(st.lists(st.sampled_from(RESPONSES), min_size=1, max_size=5))
    chunks: list[bytes] = []
    urcs: list[str] = []
    for command, lines, final in script:
        out = [(command, False)] if draw(st.booleans()) else []  # with or without echo
        out += [(line, False) for line in lines] + [(final, False)]
        for _ in range(draw(st.integers(0, 3))):
            urc = draw(st.sampled_from(URCS))
            out.insert(draw(st.integers(0, len(out) - 1)), (urc, True))  # before the final, anywhere
        urcs += [line for line, unsolicited in out if unsolicited]
        data = b"".join(b"\r\n" + line.encode() + b"\r\n" for line, _ in out)
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
        pieces, last = [], 0
        for cut in cuts + [len(data)]:
            pieces.append(data[last:cut])
            last = cut
        chunks.append(b"\x00".join(pieces))  # \x00 marks the cuts, removed below
    return script, chunks, urcs


@given(conversation())
@settings(max_examples=150, deadline=None)
def test_interleaved_urcs_split_anywhere(case: tuple[list[tuple[str, list[str], str]], list[bytes], list[str]]) -> None:
    script, chunks, urcs = case
    conn = AtConnection()
    seen_urcs: list[str] = []
    for (command, lines, final), chunk in zip(script, chunks, strict=True):
        conn.send(command, 0.0)
        events: list[object] = []
        for piece in chunk.split(b"\x00"):
            events += conn.feed(piece, 0.0)
        ends = [e for e in events if isinstance(e, Reply | Failure)]
        assert len(ends) == 1 and ends[0] is events[-1]  # the final is the last line
        end = ends[0]
        if final == "OK":
            assert end == Reply(command, tuple(lines))
        else:
            assert isinstance(end, Failure) and end.error.final == final  # type: ignore[attr-defined]
        seen_urcs += [e.line for e in events if isinstance(e, Urc)]
        assert not [e for e in events if isinstance(e, Noise)]
    assert seen_urcs == urcs


LINE = st.one_of(st.binary(max_size=80), st.sampled_from([b"OK", b"ERROR", b"> ", b"+CME ERROR: x", b"RING",
                                                          b"+CREG: ", b"\xff\xfe", b"AT"]))


def random_lines(lines: list[bytes], commands: list[str]) -> None:
    conn = AtConnection()
    now = 0.0
    for i, line in enumerate(lines):
        try:
            if not conn.busy and i % 3 == 0:
                conn.send(commands[i % len(commands)], now, payload=b"00" if i % 2 else None)
            conn.feed(line + b"\r\n", now)
            now += 0.5
            conn.timeout(now)
        except ModemError:
            pass  # the layer's own error is allowed; anything else fails the test


@given(st.lists(LINE, max_size=200))
@settings(max_examples=100, deadline=None)
def test_random_lines_raise_nothing_but_modem_error(lines: list[bytes]) -> None:
    random_lines(lines, ["AT", "AT+CMGS=5", "AT+CREG?", "AT+CSQ"])


def test_fuzz_bench_short() -> None:
    """bench/fuzz_at.py's 100,000 lines, cut to 5,000 for CI."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("fuzz_at", Path(__file__).parents[1] / "bench" / "fuzz_at.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    counts = module.fuzz(5000, 7)
    assert counts["other_exceptions"] == 0 and counts["replies"] and counts["urcs"] and counts["noise"]
