"""The modem driver: what the unit needs from a Quectel EG25-G/EC25 or SIMCom SIM7600.

A Profile holds what differs between vendors (serving-cell query, GNSS engine commands,
ICCID command); detect() picks one from ATI/AT+CGMM. ModemDriver runs the conversation on
a ModemPort: setup (numeric errors, registration URCs with location, PDU mode), a poll of
SIM, functionality, registration, operator, signal and serving cell, the GNSS engine, SMS.

IMEI, IMSI and ICCID are personal data: the driver keeps them for the unit and only ever
shows mask()ed forms. Cell identity (cell id, TAC/LAC, PCI) stays in ModemStatus.cell and is
never in as_dict(): a session that may disclose it must take it from there explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tcu.hal.at import CommandError, ModemError
from tcu.hal.modem_parse import (
    ACT_NAMES,
    Registration,
    ServingCell,
    cfun,
    csq_dbm,
    mask,
    operator,
    parse_registration,
    quectel_servingcell,
    sim_state,
    simcom_cpsi,
)
from tcu.hal.modem_port import ModemPort


@dataclass(frozen=True)
class Profile:
    name: str
    vendor: str
    models: tuple[str, ...]  # AT+CGMM answers (prefixes)
    cell_command: str
    cell_parser: Callable[[str], ServingCell]
    cell_prefix: str
    gnss_on: str
    gnss_off: str
    gnss_query: str
    gnss_already: tuple[int | None, ...]  # error codes that mean "already in that state"
    iccid_command: str
    iccid_prefix: str


QUECTEL = Profile("quectel-eg25", "Quectel", ("EG25", "EC25", "EC21", "EG21", "BG96"), 'AT+QENG="servingcell"',
                  quectel_servingcell, "+QENG:", "AT+QGPS=1", "AT+QGPSEND", "AT+QGPS?", (504, 505),
                  "AT+QCCID", "+QCCID:")
SIMCOM = Profile("simcom-sim7600", "SIMCom", ("SIMCOM_SIM7600", "SIM7600", "SIMCOM_SIM7500"), "AT+CPSI?",
                 simcom_cpsi, "+CPSI:", "AT+CGPS=1,1", "AT+CGPS=0", "AT+CGPS?", (None,), "AT+CICCID", "ICCID:")
PROFILES = {p.name: p for p in (QUECTEL, SIMCOM)}


def detect(ati: list[str], cgmm: list[str]) -> Profile:
    """The profile for the modem that answered ATI and AT+CGMM; ModemError if none fits."""
    text = " ".join(ati + cgmm).upper()
    for profile in PROFILES.values():
        if any(model.upper() in text for model in profile.models):
            return profile
    said = re.sub(r"\d{8,}", lambda m: mask(m.group()), " / ".join(ati))[:80]  # ATI may show the IMEI
    raise ModemError("unknown modem (ATI: %s): configure a profile (%s)" % (said or "no answer", ", ".join(PROFILES)))


@dataclass(frozen=True)
class ModemStatus:
    profile: str = ""
    model: str = ""
    sim: str = "unknown"
    cfun: int | None = None
    reg: Registration = field(default_factory=lambda: Registration(4))  # EPS (+CEREG): the data path
    cs_reg: Registration = field(default_factory=lambda: Registration(4))  # CS (+CREG): SMS without LTE
    operator: str | None = None
    signal_dbm: int | None = None
    cell: ServingCell = field(default_factory=lambda: ServingCell(""))
    gnss_on: bool = False
    imei: str = ""  # kept in full for the unit's own use; shown only masked
    error: str = ""

    @property
    def registered(self) -> bool:
        """Registered for data: the link to the broker can work."""
        return self.reg.data

    @property
    def sms_possible(self) -> bool:
        return self.reg.registered or self.cs_reg.registered

    @property
    def rat(self) -> str:
        return self.cell.rat or (ACT_NAMES.get(self.reg.act, "") if self.reg.act is not None else "")

    def as_dict(self) -> dict[str, Any]:
        """For `tcu status` and logs: no cell identity, IMEI masked."""
        return {"profile": self.profile, "model": self.model, "sim": self.sim, "cfun": self.cfun,
                "registration": self.reg.name, "cs_registration": self.cs_reg.name,
                "registered": self.registered, "operator": self.operator,
                "rat": self.rat, "signal_dbm": self.signal_dbm, "rsrp_dbm": self.cell.rsrp_dbm,
                "rsrq_db": self.cell.rsrq_db, "sinr_db": self.cell.sinr_db, "gnss_on": self.gnss_on,
                "imei": mask(self.imei), "error": self.error}


def _one(lines: list[str], prefix: str, command: str) -> str:
    for line in lines:
        if line.startswith(prefix):
            return line
    raise ModemError("%s answered without a %s line" % (command, prefix.rstrip(":")))


class ModemDriver:
    def __init__(self, port: ModemPort, profile: Profile | None = None) -> None:
        self.port = port
        self.profile = profile
        self.status = ModemStatus()
        self._urcs = 0  # registration URCs applied: a poll they overtook keeps theirs

    def setup(self) -> ModemStatus:
        """Identify the modem, pick its profile, switch on what the unit relies on."""
        port = self.port
        port.command("AT", 1.0)  # a modem that just booted may need a line to sync on
        port.command("AT+CMEE=1")  # numeric +CME ERROR codes
        ati = port.command("ATI")
        cgmm = port.command("AT+CGMM")
        if self.profile is None:
            self.profile = detect(ati, cgmm)
        imei = "".join(port.command("AT+CGSN")).strip()
        for line in ("AT+CREG=2", "AT+CEREG=2", "AT+CMGF=0"):  # URCs with location; SMS in PDU mode
            port.command(line)
        self.status = replace(self.status, profile=self.profile.name, model=(cgmm[0] if cgmm else ""), imei=imei)
        return self.status

    def identities(self) -> tuple[str, str]:
        """(IMSI, ICCID), for the unit only: never log them unmasked."""
        assert self.profile is not None
        imsi = "".join(self.port.command("AT+CIMI")).strip()
        line = _one(self.port.command(self.profile.iccid_command), self.profile.iccid_prefix,
                    self.profile.iccid_command)
        return imsi, line.split(":", 1)[1].strip()

    def poll(self) -> ModemStatus:
        """SIM, functionality, registration, operator, signal, serving cell: one round."""
        assert self.profile is not None, "setup() first"
        port, urcs = self.port, self._urcs
        try:
            sim = sim_state(_one(port.command("AT+CPIN?"), "+CPIN:", "AT+CPIN?"))
        except CommandError as err:  # +CME ERROR: 10 SIM not inserted, 13 SIM failure ...
            sim = err.name or err.final
        fun = cfun(_one(port.command("AT+CFUN?"), "+CFUN:", "AT+CFUN?"))
        reg, cs_reg = self.registration()
        oper = (operator(_one(port.command("AT+COPS?"), "+COPS:", "AT+COPS?"))
                if reg.registered or cs_reg.registered else None)
        dbm = csq_dbm(_one(port.command("AT+CSQ"), "+CSQ:", "AT+CSQ"))
        cell = ServingCell("")
        if reg.registered:
            lines = port.command(self.profile.cell_command)
            cell = self.profile.cell_parser(_one(lines, self.profile.cell_prefix, self.profile.cell_command))
        if self._urcs != urcs:  # a URC came in during the poll: it is newer than what the poll read
            reg, cs_reg = self.status.reg, self.status.cs_reg
        self.status = replace(self.status, sim=sim, cfun=fun, reg=reg, cs_reg=cs_reg, operator=oper,
                              signal_dbm=dbm, cell=cell, error="")
        return self.status

    def registration(self) -> tuple[Registration, Registration]:
        """(EPS registration from +CEREG: the data path; CS registration from +CREG: SMS
        over 2G/3G when LTE is gone, as in a tunnel with a GSM cell at its mouth)."""
        regs = []
        for command, prefix in (("AT+CEREG?", "+CEREG:"), ("AT+CREG?", "+CREG:")):
            regs.append(parse_registration(_one(self.port.command(command), prefix, command), solicited=True))
        return regs[0], regs[1]

    def on_registration_urc(self, line: str) -> bool:
        """Apply a +CEREG/+CREG URC to the status; whether it was one."""
        if line.startswith("+CEREG:"):
            self.status = replace(self.status, reg=parse_registration(line, solicited=False))
        elif line.startswith("+CREG:"):
            self.status = replace(self.status, cs_reg=parse_registration(line, solicited=False))
        else:
            return False
        self._urcs += 1
        return True

    def gnss(self, on: bool) -> None:
        """Switch the modem's GNSS engine on (NMEA on its NMEA port) or off; idempotent."""
        assert self.profile is not None
        try:
            self.port.command(self.profile.gnss_on if on else self.profile.gnss_off)
        except CommandError as err:
            if err.code not in self.profile.gnss_already:
                raise
        self.status = replace(self.status, gnss_on=on)

    def send_sms(self, pdu_hex: str, tpdu_length: int) -> int:
        """AT+CMGS in PDU mode; the message reference the network gave."""
        line = _one(self.port.command("AT+CMGS=%d" % tpdu_length, payload=pdu_hex.encode()), "+CMGS:", "AT+CMGS")
        return int(line.split(":", 1)[1].strip())
