"""NmeaFramer: byte stream to checksum-valid sentences, whatever the stream holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TRACES
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.hal.framer import NmeaFramer, nmea_checksum
from tcu.hal.sources import open_source

GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"


def sentence(body: str) -> str:
    """A sentence with a correct checksum."""
    return "$%s*%02X" % (body, nmea_checksum(body.encode()))


def frame(data: bytes, chunk: int | None = None) -> tuple[list[str], dict[str, int]]:
    framer = NmeaFramer()
    out: list[str] = []
    if chunk is None:
        out += framer.feed(data)
    else:
        for i in range(0, len(data), chunk):
            out += framer.feed(data[i:i + chunk])
    return out, framer.counts


def test_reference_sentences_have_valid_checksums() -> None:
    assert sentence(GGA[1:-3]) == GGA
    assert sentence(RMC[1:-3]) == RMC


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r", b"\n\r", b"\r\r\n"])
def test_line_end_variants(eol: bytes) -> None:
    out, counts = frame(GGA.encode() + eol + RMC.encode() + eol)
    assert out == [GGA, RMC]
    assert counts == {}


def test_incomplete_line_waits_for_its_end() -> None:
    framer = NmeaFramer()
    assert framer.feed(GGA.encode()) == []  # no line end yet
    assert framer.feed(b"\r\n") == [GGA]


def test_wrong_checksum_is_rejected_and_counted() -> None:
    bad = GGA[:-2] + "48"
    out, counts = frame((bad + "\r\n" + RMC + "\r\n").encode())
    assert out == [RMC]
    assert counts == {"checksum": 1}


def test_malformed_checksum_field() -> None:
    out, counts = frame(b"$GPGGA,1*4\r\n$GPGGA,1*4G\r\n$GPGGA,1*123\r\n")
    assert out == []
    assert counts == {"checksum": 3}


def test_lowercase_checksum_and_trailing_spaces_are_accepted() -> None:
    body = "GPTXT,01,01,02,u-blox ag"
    text = sentence(body)
    out, _ = frame((text[:-2] + text[-2:].lower() + "  \r\n").encode())
    assert out == [text[:-2] + text[-2:].lower()]


def test_sentence_without_checksum_is_rejected() -> None:
    # Like gpsd: mtk-3301.log's $POLYN and sl869.log's $GPTXT have none and are dropped.
    out, counts = frame(b"$POLYN,TIME,RESTART_OCCURRED\r\n" + GGA.encode() + b"\r\n")
    assert out == [GGA]
    assert counts == {"no_checksum": 1}


def test_nul_and_non_ascii_reject_the_sentence_in_progress() -> None:
    data = (b"$GPRMC,000346.03,A,4808\x00\x00\x00   \r\n" + GGA.encode() + b"\r\n"
            + b"$GPGGA,\xc3\xa9*00\r\n" + RMC.encode() + b"\r\n")
    out, counts = frame(data)
    assert out == [GGA, RMC]
    assert counts == {"non_ascii": 2}


def test_binary_frame_on_the_same_line() -> None:
    ubx = b"\xb5b\x01\x07\x5c\x00" + bytes(range(256)).replace(b"$", b"") + b"\x12\x34"
    out, counts = frame(ubx + GGA.encode() + b"\r\n" + ubx + RMC.encode() + b"\r\n" + ubx)
    assert out == [GGA, RMC]


def test_cut_off_sentence_resynchronises_at_next_dollar() -> None:
    out, counts = frame(b"$GPGSA,A,1,,,,,,,,,,,,,,,*1E" + b"$GPGSV,3,2,11,25" + GGA.encode() + b"\r\n")
    # '$' inside a sentence: the fragment before it was cut off; the valid one is kept.
    assert out == [GGA]
    assert counts == {"truncated": 2}


def test_too_long_lines_are_rejected_but_real_long_ones_kept() -> None:
    pmtkchn = sentence("PMTKCHN," + ",".join("%05d" % (i * 1001) for i in range(32)))
    assert len(pmtkchn) == 203  # as in mtk-3301.log, which gpsd accepts
    huge = sentence("GPTXT," + "x" * 400)
    out, counts = frame((pmtkchn + "\r\n" + huge + "\r\n" + GGA + "\r\n").encode())
    assert out == [pmtkchn, GGA]
    assert counts == {"too_long": 1}


def test_too_long_limit_is_configurable() -> None:
    framer = NmeaFramer(max_len=len(GGA))
    assert framer.feed((GGA + "\r\n" + RMC + "\r\n").encode()) == [GGA]
    assert framer.counts == {"too_long": 1}


def test_encapsulation_sentences_are_framed() -> None:
    ais = "!AIVDM,1,1,,B,13aL?W0P00PJ9TDN?1eh0?wH2@Iq,0*06"
    assert frame((ais + "\r\n").encode())[0] == [ais]


# Streams mixing valid sentences, corrupted ones and garbage.
_pieces = st.one_of(
    st.sampled_from([GGA, RMC, "$GPGSA,A,1,,,,,,,,,,,,,,,*1E", "$POLYN,EPH,0,00000000",
                     GGA[:-2] + "00", GGA[:30]]).map(str.encode),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"$", b"!", b"*", b"\x00", b"\xb5b"]),
    st.binary(max_size=40),
)
streams = st.lists(_pieces, max_size=40).map(b"".join)


@given(streams, st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
@settings(max_examples=300)
def test_whole_vs_byte_at_a_time_vs_random_chunks(data: bytes, cuts: list[int]) -> None:
    whole, whole_counts = frame(data)
    bytewise, bytewise_counts = frame(data, chunk=1)
    framer = NmeaFramer()
    chunked: list[str] = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        chunked += framer.feed(data[start:cut])
        start = cut
    assert whole == bytewise == chunked
    assert whole_counts == bytewise_counts == framer.counts


@given(st.binary(max_size=2000))
@settings(max_examples=300)
def test_garbage_never_raises_and_only_valid_sentences_come_out(data: bytes) -> None:
    framer = NmeaFramer()
    for text in framer.feed(data) + framer.feed(b"\r\n"):
        assert text[0] in "$!" and text.isascii() and text.isprintable()
        assert len(text) <= framer.max_len
        body, _, digits = text[1:].rpartition("*")
        assert int(digits, 16) == nmea_checksum(body.encode())


@given(streams)
def test_valid_sentences_survive_surrounding_garbage(noise: bytes) -> None:
    # Whatever came before, a line end followed by a sentence is framed.
    out, _ = frame(noise + b"\r\n" + GGA.encode() + b"\r\n")
    assert out[-1] == GGA


def _framed_log(path: Path) -> tuple[list[str], NmeaFramer]:
    framer = NmeaFramer()
    out: list[str] = []
    with open_source(str(path)) as source:
        while chunk := source.read():
            out += framer.feed(chunk)
    return out, framer


def _echoed(chk: Path) -> list[str]:
    return [line.decode("ascii") for line in chk.read_bytes().splitlines()
            if line[:1] in (b"$", b"!")]


# gpsd's .chk files echo each sentence it accepted. Where that differs from the framer:
# binary-only receivers (gpsd echoes pseudo-NMEA built from binary), gpsdf.log ($IMGSA:
# gpsd drops the unknown "IM" talker) and isync.log (gpsd reassembles a GSV that a
# $PTNTA interrupted mid-line; the framer drops the cut GSV).
NOT_ECHO_EQUAL = {"quectel-l76k-binary.log", "quectel-l76k-dual.log", "gpsdf.log", "isync.log"}


def _echo_logs() -> list[str]:
    if not TRACES.is_dir():
        return []
    return sorted(p.name for p in TRACES.glob("*.log")
                  if p.name not in NOT_ECHO_EQUAL and Path(str(p) + ".chk").exists()
                  and b"\n$" in Path(str(p) + ".chk").read_bytes())


@pytest.mark.parametrize("name", _echo_logs())
def test_real_log_sentences_equal_those_gpsd_accepted(name: str) -> None:
    out, _ = _framed_log(TRACES / name)
    assert out == _echoed(TRACES / (name + ".chk"))


def test_real_log_rejections_are_counted() -> None:
    _, framer = _framed_log(TRACES / "gp-320fw-2019-04-07-coldboot.log")
    assert framer.counts["no_checksum"] >= 1
    assert framer.counts["truncated"] >= 1
    assert framer.counts["non_ascii"] >= 1
    _, framer = _framed_log(TRACES / "ublox-zed-f9p_hpg1.11.log")  # UBX and NMEA mixed
    assert framer.counts["non_ascii"] > 100
    assert framer.discarded > 100_000
