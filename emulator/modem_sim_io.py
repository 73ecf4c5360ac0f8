"""`tcu modem-sim`'s I/O around the ModemModel: its AT port (a pty, or a loopback TCP port),
its NMEA port, its control socket and its scenario timeline (the data relay: modem_relay.py).

- AT port: a pseudo-terminal (a symlink at --link) or --listen tcp://127.0.0.1:PORT (the unit
  opens socket://127.0.0.1:PORT). A reset closes the port and creates a new one (a new pty
  behind the same symlink) a second later, then sends the boot URCs, as a real module does.
- NMEA port (--nmea-link): the trace is played all the time, but reaches the port only while
  the GNSS engine is on (AT+QGPS=1 / AT+CGPS=1,1).
- Data relay (--data LISTEN=BROKER): TCP to the real broker while registered for data; out of
  coverage it black-holes every connection (reads and drops, never RST, never FIN), and a
  connection made meanwhile is accepted and black-holed too (counted: connects_unregistered).
- Control socket: one JSON object per line, {"op": "coverage", "value": "off"}; ops in apply().
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import socketserver
import sys
import threading
import time
import tty
from dataclasses import asdict
from typing import Any

from tcu.emulator.modem_relay import DEBUG, Relay
from tcu.emulator.modem_sim import ModemModel, SimState
from tcu.firmware.errors import UsageError

RESET_S = 1.0  # a modem reset: ports gone this long


def _on_off(value: Any) -> bool:
    if value in (True, "on", "1", 1, "true"):
        return True
    if value in (False, "off", "0", 0, "false"):
        return False
    raise UsageError("expected on or off, got %r" % (value,))


def apply(sim: ModemSim, op: str, value: Any = None) -> dict[str, Any]:
    """One change of the modem's state (control socket, scenario): what it is now."""
    s = sim.model.state
    with sim.lock:
        if op == "coverage":
            s.coverage = _on_off(value)
        elif op == "cs":
            s.cs = _on_off(value)
        elif op == "service":  # no cell at all: no data, no SMS
            s.coverage = s.cs = _on_off(value)
        elif op == "roaming":
            s.roaming = _on_off(value)
        elif op == "denied":
            s.denied = _on_off(value)
        elif op == "sim":
            s.sim = _on_off(value)
        elif op == "signal":
            try:
                s.signal_dbm = int(value)
            except (TypeError, ValueError):
                raise UsageError("signal: expected dBm, e.g. -110, got %r" % (value,)) from None
        elif op == "stuck":
            s.stuck = _on_off(value)
        elif op == "errors":
            s.errors = int(value)
        elif op == "flood":  # a URC flood: N +CEREG/+QIND lines at once
            for i in range(int(value)):
                sim.model.urc('+QIND: "csq",%d,99' % (i % 32) if i % 2 else "+CEREG: %d" % s.stat(True))
        elif op == "reset":
            sim.reset()
        elif op != "status":
            raise UsageError("unknown op %r: coverage, cs, service, roaming, denied, sim, signal, stuck, "
                             "errors, flood, reset, status" % op)
        if op in ("coverage", "cs", "service", "roaming", "denied", "sim"):
            sim.model.registration_changed()
            if DEBUG:
                print("tcu modem-sim: %s %s %.3f" % (op, value, time.time()), file=sys.stderr, flush=True)
        data_up = s.stat(True) in (1, 5)
        if not data_up and sim.down_since is None:
            sim.down_since = time.monotonic()
        elif data_up:
            sim.down_since = None
    sim.kick()
    state = asdict(s)
    state["connects_unregistered"] = sim.relay.connects_unregistered if sim.relay else 0
    state["connects_racing"] = sim.relay.connects_racing if sim.relay else 0
    return state


class ModemSim:
    def __init__(self, model: ModemModel, link: str | None = None, listen: tuple[str, int] | None = None,
                 nmea_link: str | None = None) -> None:
        self.model = model
        self.link, self.listen, self.nmea_link = link, listen, nmea_link
        self.lock = threading.RLock()
        self.relay: Relay | None = None
        self.resets = 0
        self.down_since: float | None = None  # monotonic: when the data path went
        self._wake_r, self._wake_w = os.pipe()
        self._fd: int | None = None  # the pty master, or the accepted TCP connection's fd
        self._slave: int | None = None
        self._sock: socket.socket | None = None
        self._server: socket.socket | None = None
        self._nmea: tuple[int, int] | None = None
        self._down_until = 0.0
        self._closing = False
        # Only the serve thread closes or reopens the ports: another thread closing an fd that
        # select() waits on gets EBADF there, or worse its number reused by the next pty opened
        self._serving: threading.Thread | None = None
        self._served = threading.Event()
        self._reset_asked = False
        model.on_reset = self.reset
        self._open_ports()

    # -- ports -----------------------------------------------------------------------------
    def _open_ports(self) -> None:
        if self.listen:
            if self._server is None:
                self._server = socket.create_server(self.listen)
                self.listen = self._server.getsockname()[:2]
        else:
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no CR/LF translation
            os.set_blocking(master, False)
            self._fd, self._slave = master, slave
            self._symlink(self.link, os.ttyname(slave))
        if self.nmea_link:
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._nmea = (master, slave)
            self._symlink(self.nmea_link, os.ttyname(slave))

    @staticmethod
    def _symlink(link: str | None, path: str) -> None:
        if not link:
            return
        try:
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(path, link)
        except OSError as err:
            raise UsageError("cannot make the symlink %s: %s" % (link, err.strerror)) from None

    def _close_ports(self) -> None:
        for fd in (self._fd, self._slave) + (self._nmea or ()):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._fd = self._slave = self._sock = None
        self._nmea = None

    @property
    def at_path(self) -> str:
        if self.listen:
            return "socket://%s:%d" % self.listen
        return self.link or (os.ttyname(self._slave) if self._slave is not None else "")

    def reset(self) -> None:
        """The modem restarts: its ports vanish for RESET_S and come back new. Asked from
        another thread (the control socket), the serve loop does it at its next turn."""
        if self._serving is not None and threading.current_thread() is not self._serving:
            self._reset_asked = True
            self.kick()
            return
        self._reset_now()

    def _reset_now(self) -> None:
        self._reset_asked = False
        with self.lock:
            self.resets += 1
            self._close_ports()
            self._down_until = time.monotonic() + RESET_S
            s = self.model.state
            s.gnss_on, s.echo, s.creg_n, s.cereg_n, s.cmgf = False, True, 0, 0, 0
        self.kick()

    def kick(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"k")

    def gnss_write(self, data: bytes) -> None:
        """The NMEA port's writer: the trace reaches it only while the engine is on."""
        with self.lock:
            nmea = self._nmea
            on = self.model.state.gnss_on
        if nmea is not None and on:
            with contextlib.suppress(OSError, BlockingIOError):
                os.write(nmea[0], data)

    # -- the loop --------------------------------------------------------------------------
    def serve(self) -> None:
        """The modem's loop, until close(): the only thread that touches the ports' fds."""
        self._serving = threading.current_thread()
        try:
            self.model.boot()
            while not self._closing:
                self._turn()
        finally:
            self._served.set()

    def _turn(self) -> None:
        """Say what the modem has to say, then wait (at most 0.2 s) for the unit's bytes."""
        if self._reset_asked:
            self._reset_now()
        with self.lock:
            if self._down_until and time.monotonic() >= self._down_until:
                self._down_until = 0.0
                self._open_ports()
                self.model.output()  # what was said to the dead port is gone
                self.model.boot()
            fd = self._fd
            out = self.model.output() if fd is not None else b""
        if out and fd is not None:
            self._write(fd, out)
        waits = [self._wake_r] + ([fd] if fd is not None else [])
        if self._server is not None and self._sock is None and not self._down_until:
            waits.append(self._server.fileno())
        readable, _, _ = select.select(waits, [], [], 0.2)
        if self._wake_r in readable:
            os.read(self._wake_r, 4096)
        if self._server is not None and self._server.fileno() in readable:
            self._sock, _ = self._server.accept()
            with self.lock:
                self._fd = self._sock.fileno()
        elif fd is not None and fd in readable:
            self._read(fd)

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""  # no process has the pty open (EIO): wait for one
            time.sleep(0.05)
        if not data and self._sock is not None:  # the TCP peer hung up: wait for the next
            with self.lock:
                self._sock.close()
                self._sock, self._fd = None, None
            return
        with self.lock:
            self.model.feed(data)

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except (BlockingIOError, OSError):
            pass  # a unit that does not read loses what the modem said, as on a UART

    def close(self) -> None:
        """Stop the serve loop (and wait for it, from another thread), then close the ports."""
        self._closing = True
        self.kick()
        if self._serving is not None and threading.current_thread() is not self._serving:
            self._served.wait(5)
        with self.lock:
            self._close_ports()
            if self._server is not None:
                self._server.close()
        if self.relay is not None:
            self.relay.close()
        for link in (self.link, self.nmea_link):
            if link and os.path.islink(link):
                with contextlib.suppress(OSError):
                    os.unlink(link)
        if self._serving is None or self._served.is_set():  # else a stuck loop may still kick
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1  # a late kick() gets EBADF, never a reused fd


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        sim: ModemSim = self.server.sim  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            for line in self.rfile:
                try:
                    request = json.loads(line)
                    answer = {"ok": True, "state": apply(sim, str(request.get("op")), request.get("value"))}
                except (ValueError, AttributeError, UsageError) as err:
                    answer = {"ok": False, "error": str(err)}
                self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve_control(path: str, sim: ModemSim) -> _Server:
    if os.path.exists(path):
        os.unlink(path)
    server = _Server(path, _Handler)
    server.sim = sim  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, name="modem-sim-ctl", daemon=True).start()
    return server


def control(path: str, op: str, value: str | None) -> dict[str, Any]:
    """`tcu modem-sim ctl OP [VALUE]`: the modem's state after the change."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            sock.sendall(json.dumps({"op": op, "value": value}).encode() + b"\n")
            answer = json.loads(sock.makefile().readline())
    except (OSError, ValueError) as err:
        raise UsageError("no modem-sim on the control socket %s: %s" % (path, err)) from None
    if not answer.get("ok"):
        raise UsageError(answer.get("error", "refused"))
    return dict(answer["state"])


def run_scenario(sim: ModemSim, steps: list[dict[str, Any]], speed: float, stop: threading.Event,
                 repeat: bool = False) -> None:
    """The timeline: each step {"t": SECONDS, OP: VALUE, ...}, applied at t / speed."""
    while not stop.is_set():
        start = time.monotonic()
        for step in steps:
            if stop.wait(max(0.0, start + float(step.get("t", 0)) / speed - time.monotonic())):
                return
            for op, value in step.items():
                if op != "t":
                    try:
                        apply(sim, op, value)
                    except UsageError as err:
                        print("tcu modem-sim: scenario: %s" % err, file=sys.stderr)
        if not repeat:
            return
        end = float(steps[-1].get("t", 0)) if steps else 1.0
        stop.wait(max(0.0, start + (end + 1) / speed - time.monotonic()))


def new_model(profile: str) -> ModemModel:
    return ModemModel(SimState(profile=profile))
