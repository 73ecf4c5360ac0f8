"""Shared fixtures: a real Mosquitto per test session, the recorded gpsd traces."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import free_port

REPO = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO.parent / "shared" / "traces" / "gpsd"
SUBSET_TRACES = REPO / "tests" / "data" / "traces"


def _traces() -> Path:
    """The recorded gpsd logs the tests read: $TCU_TRACES if set (it must exist), else the full
    corpus at ../shared/traces/gpsd, else the subset shipped in tests/data/traces (README,
    "Recorded traces"). Tests that go over every log go over the directory chosen here."""
    chosen = os.environ.get("TCU_TRACES")
    if chosen:
        path = Path(chosen).resolve()
        if not path.is_dir():
            raise pytest.UsageError("TCU_TRACES=%s is not a directory" % chosen)
        return path
    return SHARED_TRACES if SHARED_TRACES.is_dir() else SUBSET_TRACES


TRACES = _traces()
FULL_CORPUS = TRACES.resolve() != SUBSET_TRACES.resolve()
DEMO_TRACE = REPO / "tools" / "data" / "demo-drive.log"


class Mosquitto:
    """A real broker on a loopback port; restart() and kill() serve the fault tests."""

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        self.url = "mqtt://127.0.0.1:%d" % self.port
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        # max_queued_messages 0: the default 1000 drops QoS 1 messages for a slow subscriber.
        # persistent: sessions and queued messages saved every second (the default is 30 min),
        # so a subscriber's session outlives a SIGKILLed broker.
        # (user: run as root, Mosquitto would drop to a user that cannot write workdir)
        persistence = ("persistence true\npersistence_location %s/\nautosave_interval 1\nuser %s\n"
                       % (workdir, getpass.getuser()) if persistent else "persistence false\n")
        self.config.write_text(
            "listener %d 127.0.0.1\nallow_anonymous true\n%s"
            "max_queued_messages 0\nlog_dest file %s\n" % (self.port, persistence, self.log))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError("mosquitto exited: %s" % err)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen on port %d" % self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed: .ci/run must install it")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


def traces_line() -> str:
    count = len(list(TRACES.glob("*.log")))
    if FULL_CORPUS:
        return "traces: full corpus at %s (%d logs)" % (_shown(TRACES), count)
    return "traces: the %d-log subset in %s" % (count, _shown(TRACES))


def pytest_report_header(config: pytest.Config) -> str:
    return traces_line()


def _shown(path: Path) -> str:
    return os.path.relpath(path, REPO) if path.is_relative_to(REPO.parent) else str(path)


@pytest.fixture(scope="session")
def traces() -> Path:
    return TRACES


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own (persisting sessions every second), for fault tests
    that kill and restart it."""
    if not (shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto")):
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path, persistent=True)
    broker.start()
    yield broker
    broker.stop(signal.SIGKILL)


FIGURES: list[str] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """figures("sent 1000, delivered unique 1000, ..."): printed now (pytest -s) and again
    in the terminal summary, so fault tests show their numbers in every run."""

    def report(line: str) -> None:
        text = "%s: %s" % (request.node.name, line)
        print(text)
        FIGURES.append(text)

    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if terminalreporter.verbosity < 0:  # -q shows no header: say which traces ran here
        terminalreporter.write_line(traces_line())
    if FIGURES:
        terminalreporter.section("figures (fault tests, privacy state machine)")
        for line in FIGURES:
            terminalreporter.write_line(line)


# Issue 12: long soak variants carry @pytest.mark.soak; CI skips them, `pytest -m soak` runs them.
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: a long fault soak, skipped unless selected with -m soak")
    # Tests press Ctrl-C (SIGINT) on the CLIs they start. A shell without job control (a CI
    # script's `pytest &`, nohup) starts pytest with SIGINT ignored, every child would inherit
    # that and run on; a handler of our own is reset to the default in each child at exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="a soak variant: run with pytest -m soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
