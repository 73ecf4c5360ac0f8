"""A real PostgreSQL for the tests: Debian's server, initdb'd in a temporary directory, on a
free loopback port, stopped by PID. initdb refuses to run as root, so as root the cluster
belongs to `nobody` (the server drops to it; the directory is made for it)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from conftest import free_port


def pg_bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


class Postgres:
    def __init__(self, bindir: str, fsync: bool = False) -> None:
        self.bindir = bindir
        self.fsync = fsync
        self.dir = tempfile.mkdtemp(prefix="tcu-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.url = "postgresql://tcu@127.0.0.1:%d/postgres" % self.port
        self.user = "nobody" if os.geteuid() == 0 else None
        self.proc: subprocess.Popen[bytes] | None = None
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        subprocess.run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "tcu", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, user=self.user, cwd=self.dir)
        # fsync off for a test cluster; the bench runs with PostgreSQL's defaults (fsync=True)
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.dir, "-h", "127.0.0.1",
             "-p", str(self.port), "-c", "fsync=%s" % ("on" if self.fsync else "off"), "-c", "max_connections=100"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "wb"), user=self.user,
            cwd=self.dir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited: %s" % open(os.path.join(self.dir, "log")).read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                if subprocess.run([os.path.join(self.bindir, "pg_isready"), "-h", "127.0.0.1", "-p",
                                   str(self.port)], capture_output=True).returncode == 0:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("postgres did not listen on port %d" % self.port)

    def new_database(self, name: str) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            from psycopg import sql

            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    bindir = pg_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("postgresql is not installed: scripts/test must install it")
        pytest.skip("postgresql is not installed (apt-get install postgresql)")
    server = Postgres(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
