"""What a source gave, and why it gave no fix: the honest end of ``tcu fixes`` and ``tcu replay``.

A log that yields nothing must say why (a wrong file, another encoding, a receiver without a
fix, epochs that no date places in time), so ``summarize`` reads a stream's counters into a
plain dict (for ``--json`` summaries and ``tcu status``) and ``reason`` words it in one line:

    0 fixes from 48 sentences: 48 epochs without a date (no RMC or ZDA)
    no valid checksum in 9 KB: binary or another encoding?
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .framer import NmeaFramer
from .gpsd import GpsdStream  # which imports this module only inside GpsdStream.summary

if TYPE_CHECKING:
    from . import FixStream

# Epochs the assembler completed without making a fix, by cause, as the reason words them.
DROPS = (
    ("no_date", "without a date (no RMC or ZDA)"),
    ("no_fix", "where the receiver reported no fix"),
    ("repeated_epoch", "repeating the previous epoch's time"),
    ("bad_sentence", "with a malformed sentence skipped"),
)


def summarize(stream: FixStream | GpsdStream) -> dict[str, Any]:
    """The counters of a ``FixStream`` (or ``GpsdStream``, which has its own) as a dict."""
    if isinstance(stream, GpsdStream):
        return stream.summary()
    scanner, idle, counts = stream.framer, stream.idle, stream.assembler.counts
    bad = scanner.counts.get("checksum", 0) + scanner.counts.get("too_long", 0)
    out: dict[str, Any] = {
        "source": getattr(stream.source, "path", None) or type(stream.source).__name__,
        "framing": getattr(stream.source, "framing", "nmea"),
        "bytes": stream.bytes_in,
        "sentences": scanner.candidates_seen - bad + idle.sentences + stream.ubx_framer.frames,
        "bad_checksum": bad + idle.bad + stream.ubx_framer.bad,
        "fixes": stream.fixes_made,
        "heartbeats": stream.heartbeats,
        "heartbeats_with_fix": stream.heartbeats_with_fix,
        "heartbeats_dated": stream.heartbeats_dated,
        "epochs_dropped": {key: counts[key] for key, _ in DROPS if counts.get(key)},
    }
    ubx = stream.ubx.counts
    for key, value in ubx.items():
        out["epochs_dropped"][key] = out["epochs_dropped"].get(key, 0) + value
    out["reason"] = reason(out, stream.head)
    return out


def _kb(n: int) -> str:
    return "%d bytes" % n if n < 1024 else "%s KB" % format(round(n / 1024), ",")


def reason(summary: dict[str, Any], head: bytes = b"") -> str | None:
    """One line on why a source gave no fix, or dropped epochs; None if there is nothing to say."""
    fixes, sentences, size = summary["fixes"], summary["sentences"], summary["bytes"]
    dropped = summary["epochs_dropped"]
    if size == 0:
        return "the source gave no bytes"
    if sentences == 0:
        if summary["bad_checksum"]:
            return "no valid checksum in %s (%d sentences with a wrong one): a wrong baud rate or a damaged log?" % (
                _kb(size), summary["bad_checksum"])
        types = _types_in(head)
        if not types:
            return "no valid checksum in %s: binary or another encoding?" % _kb(size)
        return "no position sentence (RMC, GGA, GNS, GLL) nor UBX NAV-PVT in %s, only %s" % (
            _kb(size), ", ".join(sorted(types)))
    details = ["%s %s %s" % (format(n, ","), "epoch" if n == 1 else "epochs", words)
               for key, words in DROPS if (n := dropped.get(key))]
    if fixes == 0 and summary.get("heartbeats"):
        with_fix = summary.get("heartbeats_with_fix", 0)
        if not with_fix:
            details.append("the receiver reported no fix in %s seconds" % format(summary["heartbeats"], ","))
        elif not summary.get("heartbeats_dated"):
            details.append("%s receiver seconds without a date (no RMC or ZDA)" % format(summary["heartbeats"], ","))
        elif not dropped:
            return None  # dormant: no position was needed, none was decoded
    if not details:
        return None if fixes else "0 fixes from %s sentences" % format(sentences, ",")
    return "%s fixes from %s sentences: %s" % (format(fixes, ","), format(sentences, ","), ", ".join(details))


def _types_in(head: bytes) -> set[str]:
    """Sentence types with a valid checksum at the start of the stream."""
    framer = NmeaFramer()
    return {s[1:6] if s[1] == "P" else s[3:6] for s in framer.feed(head + b"\r\n") if len(s) > 6}
