"""The HAL's fast path (bulk scanner, hand-written decoder) and its idle path, checked against
the careful framer and the previous pynmea2 decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TRACES
from hypothesis import given, settings
from hypothesis import strategies as st

from tcu.firmware.fix import Fix
from tcu.hal import FixStream, Heartbeat, iter_fixes
from tcu.hal import nmea_decode as fast
from tcu.hal import nmea_fields as fields
from tcu.hal import nmea_reference as reference
from tcu.hal.fast_epochs import FastAssembler
from tcu.hal.framer import NmeaFramer, nmea_checksum
from tcu.hal.idle import IdleScanner
from tcu.hal.nmea import EpochAssembler
from tcu.hal.scan import SentenceScanner
from tcu.hal.source_base import Closing
from tcu.hal.sources import open_source

EXCERPT = Path(__file__).parent / "data" / "ublox-lea-4h-excerpt.log"
USED = fast.USED_TYPES


def s(body: str) -> str:
    return "$%s*%02X" % (body, nmea_checksum(body.encode()))


RMC = s("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")
GGA = s("GNGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
GSV = s("GPGSV,3,2,11,25,10,100,40")


def framer_used(data: bytes) -> list[str]:
    """What the careful framer gives, restricted to what the scanner is for."""
    return [t for t in NmeaFramer().feed(data) if t[0] == "$" and t[3:6] in USED and t[6:7] == ","
            and "*" not in t[:-3]]


def scan(data: bytes, chunk: int | None = None) -> list[str]:
    scanner = SentenceScanner(USED)
    if chunk is None:
        return scanner.feed(data)
    out: list[str] = []
    for i in range(0, len(data), chunk):
        out += scanner.feed(data[i:i + chunk])
    return out


_pieces = st.one_of(
    st.sampled_from([RMC, GGA, GSV, RMC[:-2] + "00", GGA[:40], RMC + "   ", "$GPRMC,1*2*" + "%02X" % nmea_checksum(
        b"GPRMC,1*2"), s("GPVTG," + "9" * 300)]).map(str.encode),
    st.sampled_from([b"\r\n", b"\n", b"\r", b"$", b"!", b"*", b"\x00", b"\xb5b", b" "]),
    st.binary(max_size=30),
)
streams = st.lists(_pieces, max_size=30).map(b"".join)


@given(streams, st.integers(min_value=1, max_value=50))
@settings(max_examples=300)
def test_scanner_gives_the_framers_used_sentences_whatever_the_chunking(data: bytes, chunk: int) -> None:
    expected = framer_used(data)
    assert scan(data) == expected
    assert scan(data, chunk) == expected
    assert scan(data, 1) == expected


def _logs() -> list[str]:
    return sorted(p.name for p in TRACES.glob("*.log")) if TRACES.is_dir() else []


def receiver_bytes(path: Path) -> bytes:
    out = b""
    with open_source(str(path)) as source:
        while chunk := source.read():
            out += chunk
    return out


@pytest.mark.parametrize("name", _logs())
def test_real_logs_scanner_and_decoder_match_framer_and_pynmea2(name: str) -> None:
    data = receiver_bytes(TRACES / name)
    assert scan(data, 4096) == framer_used(data)
    careful: list[Fix] = []
    framer, assembler = NmeaFramer(), EpochAssembler(decoder=reference.decode)
    for sentence in framer.feed(data):
        careful += assembler.push(sentence)
    careful += assembler.flush()
    assert list(iter_fixes(str(TRACES / name))) == careful


def _report(decoder: object, sentence: str) -> object:
    try:
        rep = decoder(sentence)  # type: ignore[operator]
    except ValueError:
        return "error"
    return None if rep is None else tuple(getattr(rep, k) for k in fast.Report.__slots__)


_field = st.text(alphabet="0123456789.,-+NSEWAVMTK*$ xe", max_size=14)


@given(st.sampled_from(["GPRMC", "GNGGA", "GPGLL", "GNGNS", "GPVTG", "GPGSA", "GPZDA", "G1RMC", "G-GGA"]),
       st.lists(st.one_of(_field, st.sampled_from(["4807.038", "01131.000", "123519.00", "230394", "A", "1"])),
                max_size=16))
@settings(max_examples=500)
def test_fast_decoder_equals_the_pynmea2_decoder(kind: str, fields: list[str]) -> None:
    sentence = s(",".join([kind] + fields).replace("$", ""))
    assert _report(fast.decode, sentence) == _report(reference.decode, sentence)


def test_idle_path_never_parses_a_position(monkeypatch: pytest.MonkeyPatch) -> None:
    def no(*args: object) -> None:
        raise AssertionError("a coordinate was parsed while idle")

    monkeypatch.setattr(fields, "angle_e7", no)
    for cache in (fields._LAT, fields._LON):  # every coordinate goes through one of these
        monkeypatch.setattr(cache, "convert", no)
        cache.clear()
    with FixStream(open_source(str(EXCERPT)), positions_needed=False) as stream:
        items = list(stream.items())
    beats = [i for i in items if isinstance(i, Heartbeat)]
    assert items and beats == items
    # One heartbeat per receiver second, dated from the RMC dates: the last three have a fix.
    assert [(b.time_ms, b.has_fix) for b in beats][-3:] == [
        (1155179338000, True), (1155179339000, True), (1155179340000, True)]
    assert not any(b.has_fix for b in beats[:-3])
    assert stream.idle.talkers == {"GP"} and stream.idle.bad == 0


def test_idle_scanner_checks_checksums_and_keeps_partial_lines() -> None:
    scanner = IdleScanner()
    assert scanner.feed((RMC[:-2] + "00\r\n").encode()) == [] and scanner.bad == 1
    assert scanner.feed(RMC.encode()[:30]) == []
    (beat,) = scanner.feed(RMC.encode()[30:] + b"\r\n")
    assert beat.time_ms == 764426119000 and beat.has_fix
    assert scanner.feed((GGA + "\r\n").encode()) == []  # same second: skipped, no heartbeat
    assert scanner.sentences == 1 and scanner.repeats == 1 and scanner.talkers == {"GP"}
    later = s("GNGGA,123520,4807.038,N,01131.000,E,0,08,0.9,545.4,M,46.9,M,,")
    (beat,) = scanner.feed((later + "\r\n").encode())
    assert beat.time_ms == 764426120000 and not beat.has_fix and scanner.talkers == {"GP", "GN"}


def test_switching_positions_on_and_off_mid_stream(traces: Path) -> None:
    trace = traces / "ublox-8.log"
    everything = list(iter_fixes(str(trace)))
    t_on, t_off = everything[20].time_ms, everything[40].time_ms
    stream = FixStream(open_source(str(trace)), positions_needed=False)
    fixes: list[Fix] = []
    beats: list[Heartbeat] = []
    for item in stream.items():
        if isinstance(item, Fix):
            fixes.append(item)
            stream.positions_needed = item.time_ms < t_off
        else:
            beats.append(item)
            stream.positions_needed = item.time_ms is not None and t_on <= item.time_ms < t_off
    # While positions were needed every epoch came out, identical; none before or after.
    assert fixes and all(f in everything for f in fixes)
    # Switched on at t_on's heartbeat: decoding starts at its sentence, so that epoch is the first fix.
    assert fixes[0].time_ms == t_on and fixes[-1].time_ms == t_off
    assert [f.time_ms for f in fixes] == [f.time_ms for f in everything if fixes[0].time_ms <= f.time_ms <= t_off]
    assert beats[0].time_ms is not None and beats[-1].time_ms is not None and beats[-1].time_ms > t_off


def idle_beats(data: bytes, chunk: int) -> list[tuple[int | None, int, bool]]:
    scanner = IdleScanner()
    out: list[Heartbeat] = []
    for i in range(0, len(data), chunk):
        out += scanner.feed(data[i:i + chunk])
    return [(b.time_ms, b.tod_ms, b.has_fix) for b in out]


_timed = st.sampled_from([RMC, GGA, s("GPRMC,123520,V,,,,,,,230394,,,N"), s("GNGGA,123521,,,,,0,,,,,,,,"),
                          s("GPRMC,123522,A,4807.038,N,01131.000,E,,,230394,,,A")]).map(str.encode)
idle_streams = st.lists(st.one_of(_timed, _pieces), max_size=30).map(b"".join)


@given(idle_streams, st.integers(min_value=1, max_value=60))
@settings(max_examples=300)
def test_idle_scanner_never_raises_and_ignores_chunking(data: bytes, chunk: int) -> None:
    whole = idle_beats(data, max(1, len(data)))
    assert idle_beats(data, chunk) == whole
    # Every heartbeat comes from a checksum-valid RMC/GGA/GNS that the framer also accepts.
    valid = {fields.time_of_day(t[7:].split(",")[0]) for t in framer_used(data) if t[3:6] in ("RMC", "GGA", "GNS")}
    assert {tod for _, tod, _ in whole} <= valid


def test_the_idle_path_dates_its_heartbeats_on_every_log_with_fixes() -> None:
    """The replay's clock runs on heartbeats while dormant: a log whose fixes have a date must
    give dated heartbeats too, whatever order its receiver sends GGA and RMC in."""
    for log in sorted(TRACES.glob("*.log")):
        fixes = list(iter_fixes(str(log)))
        if not fixes:
            continue
        dated = [h.time_ms for h in iter_fixes(str(log), positions_needed=False).items() if h.time_ms is not None]
        assert dated, log.name
        assert dated[0] <= fixes[0].time_ms + 1000, log.name


@given(st.binary(max_size=300))
def test_checksum_is_the_xor_of_all_bytes(body: bytes) -> None:
    expected = 0
    for byte in body:
        expected ^= byte
    assert nmea_checksum(body) == expected


@given(st.sampled_from(["GPRMC", "GNGGA", "GPGLL", "GNGNS", "GPVTG", "GPGSA", "GPZDA", "G1RMC", "G-GGA"]),
       st.lists(st.one_of(_field, st.sampled_from(["4807.038", "01131.000", "123519.00", "230394", "A", "1",
                                                   "9000.00001", "18000.000", "0000.0000001", "235960"])),
                max_size=16))
@settings(max_examples=500)
def test_body_decoder_and_its_caches_equal_the_pynmea2_decoder(kind: str, fields: list[str]) -> None:
    body = ",".join([kind] + fields).replace("$", "").replace("*", "")
    sentence = s(body)
    expected = _report(reference.decode, sentence)
    assert _report(fast.decode_body, body) == expected
    assert _report(fast.decode_body, body) == expected  # again: from the caches now
    assert _report(fast.decode, sentence) == expected


# Valid values come several times over: most generated epochs should make a fix.
_times = st.sampled_from(["123519", "123519.00", "123520", "123521.5", "000000", "235959"] * 4 + ["", "12351"])
_lats = st.sampled_from([("4807.038", "N"), ("4807.0381234", "S")] * 5 + [("", ""), ("0000.000", "N"), ("48x7", "N"),
                                                                      ("4807.038", "Q")])
_lons = st.sampled_from([("01131.000", "E"), ("01131.0004", "W")] * 4 + [("", ""), ("00000.000", "E")])


@st.composite
def _epoch_sentence(draw: st.DrawFn) -> bytes:
    """A sentence of a used type, mostly well formed, with the values epochs turn on."""
    t, (lat, ns), (lon, ew) = draw(_times), draw(_lats), draw(_lons)
    talker = draw(st.sampled_from(["GP", "GN", "GL"]))
    kind = draw(st.sampled_from(["RMC", "RMC", "GGA", "GGA", "GLL", "GNS", "VTG", "GSA", "ZDA"]))
    fields = {
        "RMC": [t, draw(st.sampled_from("AAAV")), lat, ns, lon, ew, draw(st.sampled_from(["0.5", "0.5", "", "x"])),
                draw(st.sampled_from(["84.4", ""])), draw(st.sampled_from(["230394"] * 4 + ["010180", "", "320394"])),
                "", "", draw(st.sampled_from(["A", "N", ""]))],
        "GGA": [t, lat, ns, lon, ew, draw(st.sampled_from("0126")), "08", draw(st.sampled_from(["0.9", "1.25"])),
                draw(st.sampled_from(["545.4", "-3.1", ""])), "M", "46.9", "M", "", ""],
        "GLL": [lat, ns, lon, ew, t, draw(st.sampled_from("AV")), draw(st.sampled_from(["A", "N", ""]))],
        "GNS": [t, lat, ns, lon, ew, draw(st.sampled_from(["AA", "NN", "N"])), "10", "0.8", "12.0", "", "", ""],
        "VTG": [draw(st.sampled_from(["84.4", ""])), "T", "", "M", draw(st.sampled_from(["0.5", ""])), "N",
                draw(st.sampled_from(["1.0", ""])), "K", draw(st.sampled_from(["A", "N", ""]))],
        "GSA": ["A", draw(st.sampled_from("123")), "04", "05", "", "", "", "", "", "", "", "", "", "", "2.5",
                draw(st.sampled_from(["1.3", ""])), "2.1"],
        "ZDA": [t, draw(st.sampled_from(["23", ""])), "03", draw(st.sampled_from(["1994", "94"])), "", ""],
    }[kind]
    return (s(",".join([talker + kind] + fields)) + "\r\n").encode()


@given(st.lists(st.one_of(_epoch_sentence(), _epoch_sentence(), _epoch_sentence(), _pieces), max_size=40)
       .map(b"".join),
       st.integers(min_value=1, max_value=200))
@settings(max_examples=400)
def test_fast_assembler_gives_the_reference_pipelines_fixes_and_counts(data: bytes, chunk: int) -> None:
    """FastAssembler (the full path) against the Report path and the pynmea2 decoder, any chunking."""
    reference_fixes: list[Fix] = []
    careful = EpochAssembler(decoder=reference.decode)
    report_path = EpochAssembler()
    for sentence in NmeaFramer().feed(data):
        reference_fixes += careful.push(sentence)
    for sentence in framer_used(data):  # what the scanner hands over: no "*" inside the data
        report_path.push(sentence)
    reference_fixes += careful.flush()
    report_path.flush()
    stream = FixStream(_Memory(data, chunk))
    assert list(stream) == reference_fixes
    assert stream.assembler.counts == report_path.counts


class _Memory(Closing):
    is_live = False

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.pos = data, chunk, 0

    def read(self) -> bytes:
        piece = self.data[self.pos:self.pos + self.chunk]
        self.pos += len(piece)
        return piece

    def close(self) -> None:
        pass


@given(st.binary(max_size=251), st.integers(min_value=0, max_value=255))
def test_the_scanners_inline_checksum_is_nmea_checksum(body: bytes, claimed: int) -> None:
    scanner = SentenceScanner(USED)
    digits = b"%02X" % claimed
    assert scanner.verified(body, digits, b"") == (nmea_checksum(body) == claimed)


def _epochs(kinds: list[str], seconds: int) -> list[bytes]:
    """A receiver's output: the same sentences in the same order every second."""
    out = []
    for n in range(seconds):
        hms = "1235%02d" % (10 + n)
        templates = {
            "RMC": "GPRMC,%s,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A" % hms,
            "GGA": "GPGGA,%s,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,," % hms,
            "GLL": "GPGLL,4807.038,N,01131.000,E,%s,A,A" % hms,
            "GSA": "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
            "VTG": "GPVTG,084.4,T,,M,022.4,N,041.5,K,A",
            "ZDA": "GPZDA,%s,23,03,1994,00,00" % hms,
        }
        out.append(b"".join((s(templates[k]) + "\r\n").encode() for k in kinds))
    return out


@given(st.lists(st.sampled_from(["RMC", "GGA", "GLL", "GSA", "VTG", "ZDA"]), max_size=6), st.integers(3, 6))
@settings(max_examples=200)
def test_a_live_receivers_epoch_comes_out_at_its_last_sentence(more: list[str], seconds: int) -> None:
    """Close early (live sources): once learnt, each epoch is a fix at its own last sentence,
    not when the next second starts; the fixes are those of closing by the successor."""
    chunks = _epochs(["RMC"] + more, seconds)  # each second starts with its RMC
    late, early = FastAssembler(), FastAssembler()
    early.close_early = True
    scanner_late, scanner_early = SentenceScanner(USED), SentenceScanner(USED)
    late_fixes, early_fixes = [], []
    for n, chunk in enumerate(chunks):
        late_fixes += late.push_chunk(scanner_late, chunk)
        now = early.push_chunk(scanner_early, chunk)
        early_fixes += now
        if n >= 2:  # two epochs closed by their successors taught the end
            assert [f.time_ms % 60_000 for f in now][-1 if n == 2 else 0:] == [(10 + n) * 1000]
    late_fixes += late.flush()
    early_fixes += early.flush()
    assert early_fixes == late_fixes


def test_a_sentence_after_the_learnt_end_unlearns_it() -> None:
    seconds_out = _epochs(["RMC", "GGA"], 4)
    assembler, scanner = FastAssembler(), SentenceScanner(USED)
    assembler.close_early = True
    for second in seconds_out[:3]:
        assembler.push_chunk(scanner, second)
    assert assembler.cycle.learned == ("GGA", 2)
    # The fourth second brings one more sentence after its GGA: the end was wrong.
    assert len(assembler.push_chunk(scanner, seconds_out[3])) == 1  # closed early at the GGA
    extra = (s("GPGLL,4807.038,N,01131.000,E,123513,A,A") + "\r\n").encode()
    assert assembler.push_chunk(scanner, extra) == []
    assert assembler.cycle.learned is None


@given(st.from_regex(r"[+-]?[0-9]{0,5}(\.[0-9]{0,8})?", fullmatch=True))
@settings(max_examples=2000)
def test_the_fast_field_converters_equal_the_exact_ones(text: str) -> None:
    """Regex fast paths (no rounding where none is needed; degrees apart from minutes)
    against the general decimal scaling they stand in for; errors must agree too."""
    def outcome(convert, *args):  # type: ignore[no-untyped-def]
        try:
            return convert(*args)
        except ValueError:
            return "error"

    assert outcome(fields._centi, text) == outcome(fields.scaled, text, fields._ONE, 100)
    for limit in (90, 180):
        assert outcome(fields._magnitude_e7, text, limit) == outcome(fields.angle_e7, text, "+", "+", "-", limit)
