"""`tcu backend command ... --wait [SECONDS]`: the unit's answer to the command just sent.

The unit answers a command on its uplink topic (tcu/v1/UNIT/up/BOOT) with a command response
(protocol/messages.py): the command's counter, accepted / provisional / rejected, and the
session it concerns or the reason it was refused. The watcher subscribes to that unit's
uplinks and its retained status *before* the command is published, so the answer cannot
slip past. It is a clean session with its own client id and no shared subscription: every
subscriber gets its own copy, so the backend misses nothing the watcher sees.

A command the unit could not read (a bad signature, an unknown key, a malformed payload) is
answered with counter 0, since nothing in it can be trusted: such an answer arriving after
the command is taken as the answer to it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from tcu.emulator.credentials import Credentials
from tcu.emulator.crypto import is_sealed
from tcu.emulator.uplink import TlsOptions, open_client, status_topic, uplink_topic
from tcu.firmware.errors import LinkError, ProtocolError
from tcu.protocol import commands as cmd
from tcu.protocol import messages

DEFAULT_WAIT_S = 30.0
EXIT_REJECTED = 1
EXIT_NO_ANSWER = 3

WHY = {  # what a rejection reason means for the person who sent the command
    cmd.R_MALFORMED: "the unit could not decode the command (another protocol version?)",
    cmd.R_UNAUTHENTIC: "signed with a key this unit does not trust (tcu run --backend-key), altered on the way, "
                       "or the unit trusts no backend key at all",
    cmd.R_ALGORITHM: "the command names another algorithm than the unit's key for it",
    cmd.R_WRONG_UNIT: "the command names another unit",
    cmd.R_NOT_YET_VALID: "its validity window has not started by the unit's clock (a clock ahead of this one?)",
    cmd.R_EXPIRED: "its validity window was over by the unit's clock (delivered late, or a clock behind?)",
    cmd.R_REPLAYED: "its counter is not above the last one the unit accepted (sent again, or this machine's clock "
                    "is behind the one that signed the last command)",
    cmd.R_POLICY: "authentic, but the unit will not do it (no such active session, or not one the backend may end)",
}


@dataclass
class Answer:
    unit: str
    counter: int
    result: int
    detail: int  # the session (accepted) or the R_* reason (rejected)


class AnswerWatch:
    """One unit's command responses and status, subscribed before anything is published."""

    def __init__(self, url: str, unit: str, client_id: str, tls: TlsOptions | None,
                 auth: Credentials | None) -> None:
        self.unit = unit
        self.answers: list[Answer] = []
        self.online: bool | None = None  # the unit's retained status: None, never seen on this broker
        self.status_time: int | None = None
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        topics = [(uplink_topic(unit) + "/#", 1), (status_topic(unit), 1)]

        def on_connect(c: mqtt.Client, *args: object) -> None:
            c.subscribe(topics)  # again after a reconnect

        def setup(client: mqtt.Client) -> None:
            client.on_connect = on_connect
            client.on_subscribe = lambda *a: self._subscribed.set()
            client.on_message = self._on_message

        self.client = open_client(url, client_id, setup=setup, tls=tls, persistent=False, auth=auth)
        if not self._subscribed.wait(5):
            self.close()
            raise LinkError("the broker did not confirm the subscription to %s's answers within 5 s" % unit)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        if is_sealed(payload):  # located uplinks only: a command response is never sealed
            return
        try:
            msg = messages.decode(payload)
        except ProtocolError:
            return  # not ours to judge: the backend reports undecodable uplinks
        with self._cond:
            if msg.type == messages.T_STATUS:
                self.online = bool((msg.state or 0) & messages.STATE_ONLINE)
                self.status_time = msg.time
            elif msg.type == messages.T_COMMAND_RESPONSE:
                assert msg.counter is not None and msg.result is not None
                detail = msg.reason if msg.result == messages.RESULT_REJECTED else msg.sid
                self.answers.append(Answer(self.unit, msg.counter, msg.result, detail or 0))
            self._cond.notify_all()

    def publish(self, topic: str, data: bytes) -> None:
        info = self.client.publish(topic, data, qos=1)
        info.wait_for_publish(10)
        if not info.is_published():
            raise LinkError("the broker did not acknowledge the command")

    def wait(self, counter: int, timeout_s: float) -> Answer | None:
        """The answer to the command with this counter (or a counter-0 rejection: one the unit
        could not read), None when none came within timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for answer in self.answers:
                    if answer.counter == counter or (answer.counter == 0 and answer.result == messages.RESULT_REJECTED):
                        return answer
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def describe(answer: Answer, what: str) -> tuple[str, int]:
    """The line to print for an answer, and the exit status."""
    head = "unit %s answered command %d (%s): " % (answer.unit, answer.counter, what)
    if answer.result == messages.RESULT_REJECTED:
        reason = cmd.REASON_NAMES.get(answer.detail, str(answer.detail))
        return head + "rejected: %s: %s" % (reason, WHY.get(answer.detail, "reason code %d" % answer.detail)), \
            EXIT_REJECTED
    session = " (session %d)" % answer.detail if answer.detail else ""
    if answer.result == messages.RESULT_PROVISIONAL:
        return head + "accepted provisionally%s: the unit's time is not trusted yet, so it checks the command's " \
                      "validity window once it is" % session, 0
    return head + "accepted%s" % session, 0


def no_answer(watch: AnswerWatch, counter: int, timeout_s: float, not_after: int) -> str:
    """What a missing answer may mean, from the unit's retained status."""
    head = "no answer from unit %s to command %d within %g s: " % (watch.unit, counter, timeout_s)
    expiry = time.strftime("%H:%M:%SZ", time.gmtime(not_after))
    if watch.online is None:
        return head + ("no status from this unit on this broker ever: is --unit right? A unit that never "
                       "connected here has no session to keep the command for it")
    if not watch.online:
        since = " (since %s)" % time.strftime("%H:%M:%SZ", time.gmtime(watch.status_time)) if watch.status_time else ""
        return head + ("the unit is offline%s: its broker session keeps the command, and it answers when back "
                       "if that is before %s, when the command expires" % (since, expiry))
    return head + ("the unit's status says online: it may not be subscribed to its downlink yet (just "
                   "started or reconnecting, or a modem unit without its data path), it takes no commands "
                   "(tcu replay), or it is slow; the command stays valid until %s" % expiry)
