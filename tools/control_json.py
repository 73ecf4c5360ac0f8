"""The control socket's JSON-line client: one JSON object each way (emulator/daemon.py).

`tcu trigger`, `tcu status` and `tcu reload` do not use it (tools/control_cmd.py asks for the
unit's text frame, which needs no parser); they fall back to it for a unit older than the text
frames, and benches and tools that want the answer as data call ask().
"""

from __future__ import annotations

import json
from typing import Any

from tcu.emulator.control_text import render
from tcu.firmware.errors import LinkError
from tcu.tools.control_cmd import exchange


def ask(path: str, request: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """Send one request to the unit at path; its answer, or LinkError."""
    return answer_in(path, exchange(path, json.dumps(request).encode() + b"\n", timeout_s))


def answer_in(path: str, data: bytes) -> dict[str, Any]:
    """The JSON object the unit at path answered with data, or LinkError."""
    try:
        answer = json.loads(data)
    except ValueError:
        raise LinkError("the unit at %s gave no answer" % path) from None
    if not isinstance(answer, dict):
        raise LinkError("the unit at %s answered %r" % (path, answer))
    return answer


def rendered(path: str, request: dict[str, Any], data: bytes, timeout_s: float) -> tuple[int, str, str]:
    """What a unit that answers only JSON lines (data, its answer to request) would have said in
    a text frame. The request is not sent again: a clear only asks for the status after it."""
    return render(request, answer_in(path, data), lambda: ask(path, {"op": "status"}, timeout_s).get("status", {}))
