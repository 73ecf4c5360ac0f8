"""`tcu doctor`'s modem checks: which ports answer AT (and what modem, SIM, registration and
signal they report), and whether ModemManager runs and may grab the ports.

Identities are never shown in full: the IMEI appears masked (…1234), IMSI and ICCID not at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tcu.hal.at import ModemError
from tcu.hal.modem import PROFILES, ModemDriver
from tcu.hal.modem_port import ModemPort
from tcu.tools.doctor_checks import FAIL, OK, WARN, Finding

UDEV_RULE = "/etc/udev/rules.d/79-tcu-modem.rules"


def probe_at(path: str, profile: str = "auto") -> dict[str, Any]:
    """The modem on path, polled once: as_dict() (no cell identity); ModemError if it does not answer AT."""
    port = ModemPort(path)
    try:
        port.command("AT", 1.0)
        driver = ModemDriver(port, None if profile == "auto" else PROFILES[profile])
        driver.setup()
        return driver.poll().as_dict()
    finally:
        port.close()


def describe(status: dict[str, Any]) -> str:
    signal = "%s dBm" % status["signal_dbm"] if status["signal_dbm"] is not None else "no signal"
    return "%s %s (IMEI %s), SIM %s, %s%s, %s %s" % (
        status["profile"], status["model"], status["imei"], status["sim"], status["registration"],
        " on %s" % status["operator"] if status["operator"] else "", status["rat"] or "no RAT", signal)


def modem_manager_running(proc: str = "/proc") -> bool:
    for comm in Path(proc).glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "ModemManager":
                return True
        except OSError:
            continue
    return False


def check_modem_manager() -> Finding | None:
    if not modem_manager_running():
        return None
    if os.path.exists(UDEV_RULE):
        return Finding("modem", OK, "ModemManager runs; %s keeps it off the unit's ports" % UDEV_RULE)
    return Finding("modem", WARN, "ModemManager runs and may grab the modem's and the GPS's ports",
                   "install deploy/79-tcu-modem.rules as %s (udevadm control --reload; replug), or let "
                   "ModemManager own the modem and run tcu without --modem (README, Cellular modem)" % UDEV_RULE)


def check_modem(config: Any) -> list[Finding]:
    """The setup's [modem]: it answers, its SIM is ready, it is registered."""
    found = [f for f in (check_modem_manager(),) if f is not None]
    if not getattr(config, "modem", None):
        return found
    try:
        status = probe_at(config.modem, config.modem_profile)
    except ModemError as err:
        return found + [Finding("modem", FAIL, "%s: %s" % (config.modem, err),
                                "check the port (the AT port, not the NMEA or diag port), its permissions, "
                                "and that nothing else holds it")]
    found.append(Finding("modem", OK, "%s: %s" % (config.modem, describe(status))))
    if status["sim"] != "READY":
        found.append(Finding("modem", FAIL, "SIM: %s" % status["sim"], "insert or unlock the SIM (AT+CPIN)"))
    elif not status["registered"]:
        found.append(Finding("modem", WARN, "not registered for data (%s)" % status["registration"],
                             "antenna, coverage, APN, or a SIM without a data plan"))
    if not config.sms_number:
        found.append(Finding("modem", WARN, "no modem.sms_number: crash and SOS have no SMS fallback",
                             "set [modem] sms_number to the service's SMS number"))
    return found
