"""The virtual modem's data path (`tcu modem-sim --data LISTEN=BROKER`): TCP to the real broker
while the modem is registered for data; out of coverage a black hole that reads and drops, never
RST, never FIN, as a cellular data path that lost its bearer does. Connections made meanwhile are
accepted, black-holed and counted (connects_unregistered; connects_racing within 1.5 s of the loss).
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable

# A connect this soon after coverage went is a race the unit cannot win (its +CEREG URC is
# on the way; on a loaded 2-core machine the unit's threads were seen to lag up to 1.4 s):
# counted apart from connects_unregistered.
RACE_S = 1.5
DEBUG = bool(os.environ.get("TCU_SIM_DEBUG"))


class Relay:
    """The data path: LISTEN -> BROKER while the modem is registered for data, a black hole
    otherwise."""

    def __init__(self, listen: tuple[str, int], broker: tuple[str, int], up: Callable[[], bool],
                 down_since: Callable[[], float | None] = lambda: None) -> None:
        self.broker = broker
        self.up = up
        self.down_since = down_since
        self.connects = 0
        self.connects_unregistered = 0
        self.connects_racing = 0
        self._server = socket.create_server(listen, reuse_port=False)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.connects += 1
            if not self.up():
                since = self.down_since()
                if since is not None and time.monotonic() - since < RACE_S:
                    self.connects_racing += 1
                else:
                    self.connects_unregistered += 1
                    print("tcu modem-sim: a connect to the data relay %s while unregistered (%.1f s after coverage "
                          "went)%s" % (client.getpeername(), time.monotonic() - since if since else -1,
                                       " %.3f" % time.time() if DEBUG else ""),
                          file=sys.stderr, flush=True)
                threading.Thread(target=self._black_hole, args=(client, None), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.broker, timeout=5)
            except OSError:
                client.close()  # the broker itself is down: that is a refusal, not a tunnel
                continue
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                if not self.up():
                    self._black_hole(client, upstream)
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def _black_hole(self, client: socket.socket, upstream: socket.socket | None) -> None:
        """Read and drop, both ways, until the unit gives up and closes (its FIN is the
        only one): a tunnel sends nothing back."""
        socks = [client] + ([upstream] if upstream else [])
        try:
            while True:
                readable, _, _ = select.select(socks, [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if DEBUG and sock is client and data:
                        print("black hole got %r" % data[:60], file=sys.stderr, flush=True)
                    if not data:
                        if sock is client:
                            return
                        socks.remove(sock)  # the broker gave up on it: nothing more from there
        except OSError:
            pass
        finally:
            client.close()
            if upstream:
                upstream.close()

    def close(self) -> None:
        self._server.close()
