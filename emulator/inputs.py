"""Trigger inputs for `tcu run` beyond the CLI: a named pipe, a followed file, a pty, a GPIO button.

Each spec opens one input, chosen by scheme like the privacy indicator:

  fifo:PATH     a named pipe (created owner-only if missing): `echo crash > PATH`, as often as you
                like. The unit holds a write end of its own, so a writer closing is never an EOF:
                no re-open, no busy loop (the reader blocks in select). Commands end with a newline.
                A pipe the unit created is removed when it stops.
  file:PATH     a regular file followed like `tail -F`: only lines appended after the unit started
                (old lines are history, a restarted unit must not replay them). Truncated: read from
                its start again; replaced (rotation, `mv`): the rest of the old one is read, then the
                new one from its start; missing: waited for. Polled 5 times a second.
  pty:PATH      a pseudo-terminal, PATH a symlink to its terminal side (owner-only), used like a
                serial console (`picocom PATH`, or `exec 3<>PATH; echo crash >&3; read -r a <&3`).
                Each command is answered with one CRLF-terminated line: `ok`, `refused: REASON` or
                `error: REASON`, if the writer still has it open (`echo crash > PATH` has not:
                its answer is dropped, as on a serial line with nobody listening).
  gpio:PIN=KIND[,cancel-hold=S]
                a push button between GPIO PIN (BCM numbering) and ground, through gpiozero (an
                optional dependency: `pip install gpiozero`). Press: trigger KIND, debounced; for a
                WHILE_HELD service (theft) release clears it, and a line already active at start
                triggers at once. cancel-hold=S: holding it S seconds cancels KIND (only for a
                service the occupant may cancel: sos, roadside, assist).

Text commands are those of `tcu trigger`, one per line: `crash`, `trigger crash`, `clear theft`,
`cancel sos`; `#` starts a comment, blank lines are ignored, a line may end in LF, CR or CRLF.
A malformed line or a refused request never stops an input: its reason goes to stderr as one
line (and back to the writer on a pty) and the input reads on. Every request goes to `deliver`
(the unit's thread-safe UnitDaemon.request).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import stat
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from tcu.firmware.errors import UsageError
from tcu.firmware.services import TRIGGERS_BY_NAME, trigger_code

Deliver = Callable[[dict[str, Any]], dict[str, Any]]
Report = Callable[[str], None]

FORMS = "fifo:PATH, file:PATH, pty:PATH or gpio:PIN=KIND[,cancel-hold=SECONDS]"
VERBS = ("trigger", "clear", "cancel")
MAX_LINE = 1024  # longer is not a command: dropped, so a runaway writer cannot grow memory
POLL_S = 0.2  # file: how often a followed file is looked at
BOUNCE_S = 0.05  # gpio: contact bounce of a push button


class Input(Protocol):
    def close(self) -> None: ...


class InputGroup:
    """The open inputs of a unit; close() stops their threads and releases files, ptys and pins."""

    def __init__(self, inputs: list[Input]) -> None:
        self.inputs = inputs

    def close(self) -> None:
        while self.inputs:
            self.inputs.pop().close()

    def __enter__(self) -> InputGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_inputs(specs: list[str], deliver: Deliver, *, report: Report | None = None) -> InputGroup:
    """Open every spec (see the module doc); UsageError naming a bad one, with none left open."""
    group = InputGroup([])
    try:
        for spec in specs:
            group.inputs.append(_open(spec, deliver, report or _to_stderr))
    except BaseException:
        group.close()
        raise
    return group


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _open(spec: str, deliver: Deliver, report: Report) -> Input:
    scheme, _, arg = spec.partition(":")
    if scheme == "fifo" and arg:
        return FifoInput(spec, arg, deliver, report)
    if scheme == "file" and arg:
        return FileInput(spec, arg, deliver, report)
    if scheme == "pty" and arg:
        return PtyInput(spec, arg, deliver, report)
    if scheme == "gpio":
        from tcu.emulator.gpio_input import GpioInput  # gpiozero is imported only for a button

        return GpioInput(spec, arg, deliver, report)
    raise UsageError("input %r: expected %s" % (spec, FORMS))


def parse_command(line: str) -> dict[str, Any] | None:
    """'clear theft' -> {"op": "clear", "kind": "theft"}; None for a blank or comment line."""
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    if len(words) == 1 and words[0] in VERBS:  # not a trigger named "clear"
        raise UsageError("%r needs the trigger to %s: %s KIND (KIND: %s)" % (
            words[0], words[0], words[0], ", ".join(sorted(TRIGGERS_BY_NAME))))
    if len(words) == 1:
        words = ["trigger", words[0]]
    if len(words) != 2 or words[0] not in VERBS:
        raise UsageError("expected KIND, trigger KIND, clear KIND or cancel KIND, got %r" % line.strip())
    trigger_code(words[1])  # UsageError for an unknown one
    return {"op": words[0], "kind": words[1]}


class Lines:
    """Bytes in, complete lines out (LF, CR or CRLF); an overlong line is dropped, not kept."""

    def __init__(self) -> None:
        self._tail, self._overlong = b"", False

    def feed(self, data: bytes) -> Iterator[str]:
        *lines, tail = re.split(rb"\r\n|\r|\n", self._tail + data)
        if lines and self._overlong:  # the end of a line already dropped
            lines[0], self._overlong = b"", False
        self._tail = b"" if self._overlong else tail
        if len(self._tail) > MAX_LINE:
            self._tail, self._overlong = b"", True
        for line in lines:
            if line and len(line) <= MAX_LINE:
                yield line.decode("utf-8", "replace")

    def clear(self) -> None:
        self._tail, self._overlong = b"", False


class _Commands:
    """Turns one line into one request and its answer; shared by every text input."""

    def __init__(self, spec: str, deliver: Deliver, report: Report) -> None:
        self.spec, self._deliver, self._report = spec, deliver, report

    def answer(self, line: str) -> str | None:
        """The answer to `line`: "ok", "refused: ..." or "error: ..."; None for no command."""
        try:
            request = parse_command(line)
        except UsageError as err:
            return self._failed("error: %s" % err)
        if request is None:
            return None
        return self.send(request)

    def send(self, request: dict[str, Any]) -> str:
        reply = self._deliver(request)
        if reply.get("ok"):
            return "ok"
        return self._failed("refused: %s %s: %s" % (request["op"], request["kind"], reply.get("error", "no reason")))

    def _failed(self, answer: str) -> str:
        self._report("tcu input %s: %s" % (self.spec, answer))
        return answer


class _Reader(_Commands):
    """One thread per input; close() wakes it through a pipe (no timeouts needed) and joins it."""

    def __init__(self, spec: str, deliver: Deliver, report: Report) -> None:
        super().__init__(spec, deliver, report)
        self.lines = Lines()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="tcu-input %s" % spec, daemon=True)

    def _wait(self, fd: int | None, timeout: float | None = None) -> bool:
        """Until fd is readable (or timeout passes); False once the input is closing."""
        ready, _, _ = select.select([self._wake_r] if fd is None else [fd, self._wake_r], [], [], timeout)
        return self._wake_r not in ready

    def _run(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Close what the input holds, once its thread has stopped."""

    def _close_pipe(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._close_pipe()
        self._release()


class FifoInput(_Reader):
    def __init__(self, spec: str, path: str, deliver: Deliver, report: Report) -> None:
        super().__init__(spec, deliver, report)
        self.path, self._created, self._fds = path, False, []
        try:
            if not os.path.lexists(path):
                os.mkfifo(path, 0o600)
                self._created = True
            elif not stat.S_ISFIFO(os.stat(path).st_mode):
                raise UsageError("input %s: %s is not a named pipe (file:PATH follows a regular file)" % (spec, path))
            self._fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            self._fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # our own writer: no EOF when one leaves
        except (OSError, UsageError) as err:
            self._release()
            self._close_pipe()
            if isinstance(err, UsageError):
                raise
            raise UsageError("input %s: %s" % (spec, err.strerror or err)) from None
        self._thread.start()

    def _run(self) -> None:
        while self._wait(self._fds[0]):
            with contextlib.suppress(BlockingIOError):
                for line in self.lines.feed(os.read(self._fds[0], 4096)):
                    self.answer(line)

    def _unlink(self) -> None:
        if self._created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())
        self._unlink()


class FileInput(_Reader):
    def __init__(self, spec: str, path: str, deliver: Deliver, report: Report) -> None:
        super().__init__(spec, deliver, report)
        self.path = path
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            self._close_pipe()
            raise UsageError("input %s: the directory %s does not exist" % (spec, folder))
        self._fd: int | None = None
        if os.path.exists(path):
            if not os.path.isfile(path):
                self._close_pipe()
                raise UsageError("input %s: %s is not a regular file (fifo:PATH reads a named pipe)" % (spec, path))
            self._fd = os.open(path, os.O_RDONLY)
            os.lseek(self._fd, 0, os.SEEK_END)  # what is there already is history
        self._thread.start()

    def _run(self) -> None:
        while self._wait(None, POLL_S):
            self._follow()

    def _follow(self) -> None:
        if self._fd is None:
            with contextlib.suppress(OSError):
                self._fd = os.open(self.path, os.O_RDONLY)  # a new file: read from its start
            if self._fd is None:
                return
        self._read_to_end(self._fd)
        try:
            now = os.stat(self.path)
        except OSError:
            return  # moved away, the new one not there yet: keep the old one until it is
        held = os.fstat(self._fd)
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            os.close(self._fd)  # rotated: the old one was read to its end above
            self._fd = None
            self.lines.clear()
            self._follow()
        elif now.st_size < os.lseek(self._fd, 0, os.SEEK_CUR):
            os.lseek(self._fd, 0, os.SEEK_SET)  # truncated: what follows is new
            self.lines.clear()
            self._read_to_end(self._fd)

    def _read_to_end(self, fd: int) -> None:
        while data := os.read(fd, 65536):
            for line in self.lines.feed(data):
                self.answer(line)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


class PtyInput(_Reader):
    """Answers go only to someone with the terminal open, as on a serial line: `echo crash > PATH`
    closes before its answer comes, which is then dropped rather than left for the next reader."""

    def __init__(self, spec: str, link: str, deliver: Deliver, report: Report) -> None:
        super().__init__(spec, deliver, report)
        self.link, self.dropped = link, 0  # dropped: answers nobody was there to read
        self._idle = True  # nobody has had the terminal open since the last look
        if os.path.lexists(link) and not os.path.islink(link):
            self._close_pipe()
            raise UsageError("input %s: %s exists and is not a symlink (not replacing it)" % (spec, link))
        self._master, slave = os.openpty()
        tty.setraw(slave)  # no echo (our answers would come back as commands), bytes unchanged
        os.fchmod(slave, 0o600)
        self.tty = os.ttyname(slave)
        os.close(slave)  # kept open, nobody's closing it would show (POLLHUP) on our side
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self.tty, link)
        except OSError as err:
            os.close(self._master)
            self._close_pipe()
            raise UsageError("input %s: cannot link %s: %s" % (spec, link, err.strerror or err)) from None
        self._thread.start()

    def _run(self) -> None:
        while self._wait(self._master):
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: nobody has the terminal open; wait for someone, polling
                if not self._idle:
                    self._idle = True
                    self._drop_unread()
                if not self._wait(None, POLL_S):
                    return
                continue
            self._idle = False
            answers = [a for a in map(self.answer, self.lines.feed(data)) if a is not None]
            if not answers:
                continue
            if not self._someone_there():
                self.dropped += len(answers)
                continue
            with contextlib.suppress(BlockingIOError):  # the reader is not reading and its queue is full
                os.write(self._master, "".join(a + "\r\n" for a in answers).encode())

    def _someone_there(self) -> bool:
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        return not any(events & select.POLLHUP for _, events in poller.poll(0))

    def _drop_unread(self) -> None:
        """Answers written just as their reader closed: gone, so the next reader gets only its own."""
        with contextlib.suppress(OSError):
            fd = os.open(self.tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            termios.tcflush(fd, termios.TCIFLUSH)
            os.close(fd)

    def _release(self) -> None:
        with contextlib.suppress(OSError):
            if os.readlink(self.link) == self.tty:
                os.unlink(self.link)
        os.close(self._master)
