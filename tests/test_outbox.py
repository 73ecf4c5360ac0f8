"""The durable outbox on its own: reopening, torn and corrupt files, eviction by priority,
and purging delivered positions from the file."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tcu.emulator.outbox import DONE, EVICT, PUT, Outbox, next_boot, scan


def payload(i: int, located: bool = True) -> bytes:
    return b"\x8a\x0a" + i.to_bytes(4, "big") + (b"LOC" if located else b"NOL") + os.urandom(8)


def test_records_survive_a_reopen_in_order_and_delivered_ones_do_not(tmp_path: Path) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path)
    for seq in range(1, 11):
        box.put(7, seq, seq % 3, True, payload(seq))
    assert [r.seq for r in box.commit()] == list(range(1, 11))
    box.delivered([(7, 2), (7, 5)])
    box.commit()
    os.close(box._fd)  # like a SIGKILL: no close(), no purge
    again = Outbox(path)
    assert [r.seq for r in again.pending()] == [1, 3, 4, 6, 7, 8, 9, 10]
    assert again.recovery.cut_at is None and again.max_boot() == 7
    again.close()


def test_staged_but_uncommitted_records_are_not_in_the_file(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.put(1, 1, 0, False, b"x")
    assert (tmp_path / "outbox").stat().st_size == 0
    box.commit()
    assert (tmp_path / "outbox").stat().st_size > 0
    box.close()


def test_boot_numbers_only_go_up(tmp_path: Path) -> None:
    path = tmp_path / "outbox"
    first = next_boot(path)
    assert next_boot(path) == first + 1
    assert next_boot(path, floor=first + 10) == first + 11


def build_journal(path: Path) -> tuple[bytes, dict[tuple[int, int], bytes]]:
    """A journal with puts of every priority, deliveries and evictions, never purged."""
    rng = random.Random(6)
    box = Outbox(path, max_records=60, purge_interval_s=1e9)
    payloads: dict[tuple[int, int], bytes] = {}
    seq = 0
    for _ in range(40):
        for _ in range(rng.randint(1, 6)):
            seq += 1
            payloads[(3, seq)] = payload(seq)
            box.put(3, seq, rng.choice((0, 1, 2, 2)), True, payloads[(3, seq)])
        box.commit()
        live = [r.key for r in box.pending()]
        box.delivered(rng.sample(live, min(len(live), rng.randint(0, 3))))
    box.commit()
    assert box.stats.evicted_total > 0 and len(box) > 0
    os.close(box._fd)
    return path.read_bytes(), payloads


def expected_after(frames: list[tuple[int, bytes]], limit: int) -> tuple[list[tuple[int, int]], int]:
    """An independent model: live keys after the frames that end at or before `limit`."""
    live: dict[tuple[int, int], None] = {}
    good = 0
    for end, body in frames:
        if end > limit:
            break
        good = end
        if body[0] == PUT:
            live[(int.from_bytes(body[1:5], "little"), int.from_bytes(body[5:9], "little"))] = None
        else:
            assert body[0] in (DONE, EVICT)
            for off in range(1, len(body), 8):
                live.pop((int.from_bytes(body[off:off + 4], "little"), int.from_bytes(body[off + 4:off + 8], "little")),
                         None)
    return list(live), good


def test_a_thousand_torn_or_corrupt_files_always_reopen_losing_only_what_follows_the_damage(
        tmp_path: Path, figures) -> None:
    base, payloads = build_journal(tmp_path / "base")
    frames, good, why = scan(base)
    assert good == len(base) and why == ""
    boundaries = {0} | {end for end, _ in frames}
    rng = random.Random(2026)
    path = tmp_path / "outbox"
    counts = {"truncations": 0, "bit flips": 0, "detected": 0, "clean cuts": 0, "lost records": 0}
    for i in range(1200):
        data = bytearray(base)
        if i % 2:
            at = rng.randrange(len(base))
            data[at] ^= 1 << rng.randrange(8)
            counts["bit flips"] += 1
            limit = at  # the frame holding this byte is damaged
        else:
            at = rng.randrange(len(base))
            del data[at:]
            counts["truncations"] += 1
            limit = at
        path.write_bytes(data)
        box = Outbox(path)  # must never raise
        want, good_end = expected_after(frames, limit)
        got = [r.key for r in box.pending()]
        assert got == want, "damage at %d" % at
        assert all(r.payload == payloads[r.key] for r in box.pending())
        damaged = bool(i % 2) or at not in boundaries
        if damaged:
            assert box.recovery.cut_at == good_end, "damage at %d not detected" % at
            counts["detected"] += 1
        else:
            assert box.recovery.cut_at is None
            counts["clean cuts"] += 1
        assert path.stat().st_size == good_end
        counts["lost records"] += len(expected_after(frames, len(base))[0]) - len(got)
        if i % 100 == 0:  # the repaired outbox takes new records
            box.put(99, i, 0, False, b"after repair")
            box.commit()
            os.close(box._fd)
            assert [r.key for r in Outbox(path).pending()][-1] == (99, i)
        else:
            os.close(box._fd)
    figures("1200 damaged files (%(truncations)d truncations, %(bit flips)d bit flips): all reopened; "
            "%(detected)d damaged tails detected and cut, %(clean cuts)d truncations on a record boundary; "
            "lost only records after the damage" % counts)
    assert counts["detected"] == 1200 - counts["clean cuts"]


def test_a_flood_of_low_priority_data_never_evicts_crash_or_sos_reports(tmp_path: Path, figures) -> None:
    box = Outbox(tmp_path / "outbox", max_records=200)
    crash = []
    low = 0
    for seq in range(1, 20_001):
        if seq % 200 == 0:
            crash.append((1, seq))
            box.put(1, seq, 0, True, payload(seq))
        else:
            low += 1
            box.put(1, seq, 1 + seq % 2, True, payload(seq))
        if seq % 100 == 0:
            box.commit()
    box.commit()
    kept = {r.key for r in box.pending()}
    evicted_crash = sum(key not in kept for key in crash)
    figures("outbox of 200 under 20,000 uplinks (%d crash/SOS): %d evicted (theft %d, assistance %d), "
            "%d crash/SOS evicted, all %d crash/SOS pending" % (
                len(crash), box.stats.evicted_total, box.stats.evicted.get(1, 0), box.stats.evicted.get(2, 0),
                evicted_crash, len(crash)))
    assert evicted_crash == 0 and box.stats.evicted.get(0, 0) == 0
    assert len(box) == 200 and box.stats.evicted_total == low - (200 - len(crash))
    # the lowest priority goes first: no theft record was evicted while assistance ones remained
    assert all(r.priority in (0, 1) for r in box.pending()) or box.stats.evicted.get(1, 0) == 0
    box.close()
    assert {r.key for r in Outbox(tmp_path / "outbox").pending()} == kept


def test_crash_reports_beyond_the_limit_are_kept_and_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox", max_records=10)
    for seq in range(1, 16):
        assert box.put(1, seq, 0, True, payload(seq))
    assert len(box) == 15 and box.stats.over_limit == 5
    assert not box.put(1, 16, 2, True, payload(16))  # full of crash reports: this one goes
    assert box.stats.evicted == {2: 1}
    box.close()


@pytest.mark.parametrize("pending", [0, 10])
def test_delivered_positions_leave_the_file(tmp_path: Path, pending: int) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path, purge_interval_s=0)
    sent = [payload(seq) for seq in range(40)]
    for seq, data in enumerate(sent):
        box.put(1, seq, 2, True, data)
    box.commit()
    box.delivered([(1, seq) for seq in range(40 - pending)])
    box.commit()
    assert box.purge_due()
    box.purge()
    content = path.read_bytes()
    assert not any(data in content for data in sent[:40 - pending])
    assert all(data in content for data in sent[40 - pending:])
    assert not (tmp_path / "outbox.tmp").exists()
    box.close()
    assert len(Outbox(path)) == pending
