"""An embedded MQTT broker, so `tcu replay` and `tcu demo` work with nothing installed.

amqtt: pure Python (wheels everywhere a Raspberry Pi runs), asyncio, MQTT 3.1.1. It runs
in a daemon thread on a free loopback port. It is a convenience for trying the unit out,
not a production broker: deployments and the tests use Mosquitto.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from tcu.firmware.errors import LinkError


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Start with `with EmbeddedBroker() as broker:`; connect to `broker.url`."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_loopback_port()
        self.url = "mqtt://127.0.0.1:%d" % self.port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="embedded-broker", daemon=True)
        self._broker: Any = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        from amqtt.broker import Broker  # imported late: only this path needs it

        config = {
            "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d" % self.port}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._thread.start()

        async def _start() -> Any:
            broker = Broker(config, loop=self._loop)
            await broker.start()
            return broker

        try:
            self._broker = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(10)
        except Exception as err:  # amqtt raises its own and asyncio errors alike
            raise LinkError("the embedded broker did not start on port %d: %s" % (self.port, err)) from None

    def stop(self) -> None:
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
            self._broker = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
