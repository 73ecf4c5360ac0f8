"""Which processes hold a serial device open (Linux /proc), so `tcu doctor` can say "PID 4242
(tcu run) has it" rather than advise checking the cable: two readers split one NMEA stream."""

from __future__ import annotations

import os


def holders(device: str) -> list[tuple[int, str]]:
    """(pid, command line) of the other processes with `device` open; those whose /proc
    entries this user cannot read are not seen."""
    try:
        target = os.path.realpath(device)
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    found = []
    for pid in pids:
        if pid == os.getpid():
            continue
        fd_dir = "/proc/%d/fd" % pid
        try:
            if any(os.readlink(os.path.join(fd_dir, fd)) == target for fd in os.listdir(fd_dir)):
                with open("/proc/%d/cmdline" % pid, "rb") as file:
                    argv = file.read().split(b"\0")
                found.append((pid, " ".join(a.decode("utf-8", "replace") for a in argv if a)[:80]))
        except OSError:
            continue
    return found


def held_by(device: str) -> str:
    """'' or a remedy naming the holders."""
    held = holders(device)
    if not held:
        return ""
    return "%s is held open by %s: a second reader splits its NMEA stream; stop it, or ask a running unit " \
        "with tcu status" % (device, ", ".join("PID %d (%s)" % h for h in held))
