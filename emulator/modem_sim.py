"""A virtual modem as a scripted conversation (after ofono's phonesim and ModemManager's
test-port-context): its state in one object, each command a row of a table, answers in the
formats of the Quectel EC25/EG25-G and SIMCom SIM7500/SIM7600 AT manuals.

Sans-I/O like the unit's side: feed(bytes) takes what the unit wrote, output() returns what
the modem says (responses and URCs). The I/O (pty, TCP, NMEA port, data relay, control
socket) is in emulator/modem_sim_io.py.

Radio model, as a tunnel behaves: `coverage` is LTE (EPS registration, +CEREG, the data
path); `cs` is a GSM cell still heard (+CREG, SMS). coverage off keeps SMS working; both off
(`service off`) and SMS fails with +CMS ERROR: 331.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tcu.hal.modem_parse import dbm_to_csq

ESC = b"\x1b"
CTRL_Z = b"\x1a"

BOOT_URCS = {"quectel-eg25": ["RDY", "+CFUN: 1", "+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"],
             "simcom-sim7600": ["RDY", "+CPIN: READY", "SMS DONE", "PB DONE"]}
IDENTITY = {
    "quectel-eg25": (["Quectel", "EG25", "Revision: EG25GGBR07A08M2G"], "EG25", "Quectel"),
    "simcom-sim7600": (["Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600E-H",
                        "Revision: SIM7600M22_V2.0", "+GCAP: +CGSM"], "SIMCOM_SIM7600E-H", "SIMCOM INCORPORATED"),
}
PROFILES = tuple(IDENTITY)
# Test identities (never a real subscriber's): MCC 001 / MNC 01 is the ITU test network.
IMEI, IMSI, ICCID = "867698049999990", "001010000000001", "89001010000000000017"


@dataclass
class SimState:
    profile: str = "quectel-eg25"
    echo: bool = True
    cmee: int = 1
    creg_n: int = 0
    cereg_n: int = 0
    cmgf: int = 0
    cfun: int = 1
    sim: bool = True
    coverage: bool = True  # LTE: EPS registration and the data path
    cs: bool = True  # a GSM cell: CS registration and SMS
    roaming: bool = False
    denied: bool = False
    signal_dbm: int = -75
    gnss_on: bool = False
    stuck: bool = False  # answers nothing at all
    errors: int = 0  # the next N commands answer ERROR
    operator: str = "TCU Test Net"
    mcc: str = "001"
    mnc: str = "01"
    tac: str = "1A2B"
    cell: str = "1C3D4E5"
    pci: int = 257
    mr: int = 0  # SMS message reference

    def stat(self, eps: bool) -> int:
        """27.007 <stat>: 1 home, 5 roaming, 2 searching, 3 denied, 0 off."""
        if self.cfun != 1 or not self.sim:
            return 0
        if self.denied:
            return 3
        if not (self.coverage if eps else self.cs):
            return 2
        return 5 if self.roaming else 1


class ModemModel:
    """One modem's AT conversation. on_sms(pdu_hex, mr) is called for every SMS sent;
    on_reset() when the unit asked for a reset or power-down (the I/O re-creates the ports)."""

    def __init__(self, state: SimState | None = None, on_sms: Callable[[str, int], None] | None = None,
                 on_reset: Callable[[], None] | None = None) -> None:
        self.state = state or SimState()
        self.on_sms = on_sms
        self.on_reset = on_reset
        self._in = bytearray()
        self._out = bytearray()
        self._sms_length: int | None = None  # awaiting a PDU after "> "
        self.commands = 0

    # -- I/O side --------------------------------------------------------------------------
    def output(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    def boot(self) -> None:
        for urc in BOOT_URCS[self.state.profile]:
            self.urc(urc)

    def urc(self, line: str) -> None:
        self._out += b"\r\n" + line.encode() + b"\r\n"

    def feed(self, data: bytes) -> None:
        self._in += data
        while True:
            if self._sms_length is not None:
                if not self._take_pdu():
                    return
                continue
            end = self._in.find(b"\r")
            if end < 0:
                if len(self._in) > 4096:
                    self._in.clear()
                return
            raw = bytes(self._in[:end]).strip(b"\n")
            del self._in[:end + 1]
            if self.state.stuck:
                continue
            line = raw.decode("ascii", "replace").strip()
            if not line:
                continue
            if self.state.echo:
                self._out += raw + b"\r"
            self._command(line)

    def _take_pdu(self) -> bool:
        for i, byte in enumerate(self._in):
            if byte in (CTRL_Z[0], ESC[0]):
                pdu = bytes(self._in[:i]).decode("ascii", "replace").strip()
                del self._in[:i + 1]
                length, self._sms_length = self._sms_length, None
                if byte == ESC[0]:
                    self._final("OK")  # cancelled
                else:
                    self._sms(pdu, length or 0)
                return True
        return False

    # -- the conversation ------------------------------------------------------------------
    def _final(self, text: str) -> None:
        self._out += b"\r\n" + text.encode() + b"\r\n"

    def _lines(self, *lines: str) -> None:
        for line in lines:
            self._out += b"\r\n" + line.encode() + b"\r\n"

    def _cme(self, code: int) -> None:
        self._final("+CME ERROR: %d" % code if self.state.cmee else "ERROR")

    def _cms(self, code: int) -> None:
        self._final("+CMS ERROR: %d" % code if self.state.cmee else "ERROR")

    def _command(self, line: str) -> None:
        self.commands += 1
        upper = line.upper()
        if self.state.errors > 0:
            self.state.errors -= 1
            self._final("ERROR")
            return
        if not upper.startswith("AT"):
            self._final("ERROR")
            return
        for pattern, handler in self._table():
            match = re.fullmatch(pattern, line[2:], re.IGNORECASE)
            if match:
                handler(self, *match.groups())
                return
        self._final("ERROR")  # anything else, as test-port-context answers

    def _table(self) -> list[tuple[str, Callable[..., None]]]:
        vendor = QUECTEL_TABLE if self.state.profile == "quectel-eg25" else SIMCOM_TABLE
        return COMMON_TABLE + vendor

    # common 27.007/27.005 commands
    def ok(self, *args: str) -> None:
        self._final("OK")

    def ate(self, value: str) -> None:
        self.state.echo = value != "0"
        self._final("OK")

    def cmee(self, value: str) -> None:
        self.state.cmee = int(value)
        self._final("OK")

    def ati(self) -> None:
        lines = list(IDENTITY[self.state.profile][0])
        if self.state.profile == "simcom-sim7600":
            lines.insert(3, "IMEI: %s" % IMEI)
        self._lines(*lines)
        self._final("OK")

    def cgmm(self) -> None:
        self._lines(IDENTITY[self.state.profile][1])
        self._final("OK")

    def cgmi(self) -> None:
        self._lines(IDENTITY[self.state.profile][2])
        self._final("OK")

    def cgsn(self) -> None:
        self._lines(IMEI)
        self._final("OK")

    def cimi(self) -> None:
        if not self.state.sim:
            self._cme(10)
            return
        self._lines(IMSI)
        self._final("OK")

    def cpin_query(self) -> None:
        if not self.state.sim:
            self._cme(10)
            return
        self._lines("+CPIN: READY")
        self._final("OK")

    def cfun_query(self) -> None:
        self._lines("+CFUN: %d" % self.state.cfun)
        self._final("OK")

    def cfun_set(self, value: str, _reset: str | None = None) -> None:
        fun = int(value)
        if fun not in (0, 1, 4):
            self._cme(4)
            return
        self.state.cfun = fun
        self._final("OK")
        self.registration_changed()

    def reg_set(self, which: str, value: str) -> None:
        n = int(value)
        if n not in (0, 1, 2):
            self._cme(4)
            return
        if which.upper() == "E":
            self.state.cereg_n = n
        else:
            self.state.creg_n = n
        self._final("OK")

    def reg_query(self, which: str) -> None:
        eps = which.upper() == "E"
        n = self.state.cereg_n if eps else self.state.creg_n
        name = "+CEREG" if eps else "+CREG"
        self._lines("%s: %d,%s" % (name, n, self._reg_fields(eps, n)))
        self._final("OK")

    def _reg_fields(self, eps: bool, n: int) -> str:
        stat = self.state.stat(eps)
        if n == 2 and stat in (1, 5):
            return '%d,"%s","%s",%d' % (stat, self.state.tac, self.state.cell, 7 if eps else 0)
        return str(stat)

    def registration_changed(self) -> None:
        """URCs for a change of registration, as +CREG=n/+CEREG=n asked for."""
        for eps, n, name in ((False, self.state.creg_n, "+CREG"), (True, self.state.cereg_n, "+CEREG")):
            if n:
                self.urc("%s: %s" % (name, self._reg_fields(eps, n)))

    def cops_query(self) -> None:
        if self.state.stat(True) in (1, 5) or self.state.stat(False) in (1, 5):
            self._lines('+COPS: 0,0,"%s",%d' % (self.state.operator, 7 if self.state.stat(True) in (1, 5) else 0))
        else:
            self._lines("+COPS: 0")
        self._final("OK")

    def cops_test(self) -> None:
        self._lines('+COPS: (2,"%s","TCU","%s%s",7),,(0-4),(0-2)' % (self.state.operator, self.state.mcc,
                                                                    self.state.mnc))
        self._final("OK")

    def csq(self) -> None:
        covered = self.state.coverage or self.state.cs
        self._lines("+CSQ: %d,99" % (dbm_to_csq(self.state.signal_dbm) if covered and self.state.cfun == 1 else 99))
        self._final("OK")

    def cmgf(self, value: str) -> None:
        self.state.cmgf = int(value)
        self._final("OK")

    def cmgs(self, length: str) -> None:
        if self.state.cmgf != 0:
            self._cms(304)  # this modem plays PDU mode only
            return
        self._sms_length = int(length)
        self._out += b"\r\n> "

    def _sms(self, pdu: str, length: int) -> None:
        try:
            octets = bytes.fromhex(pdu)
        except ValueError:
            self._cms(304)
            return
        smsc = octets[0] + 1 if octets else 0
        if not octets or len(octets) - smsc != length:
            self._cms(304)  # <length> is the TPDU's octets, without the SMSC part (27.005 3.5.1)
            return
        if not (self.state.stat(False) in (1, 5) or self.state.stat(True) in (1, 5)):
            self._cms(331)
            return
        self.state.mr = (self.state.mr + 1) % 256
        if self.on_sms is not None:
            self.on_sms(pdu, self.state.mr)
        self._lines("+CMGS: %d" % self.state.mr)
        self._final("OK")

    def power_down(self, *args: str) -> None:
        self._final("OK")
        self.urc("POWERED DOWN" if self.state.profile == "quectel-eg25" else "NORMAL POWER DOWN")
        if self.on_reset is not None:
            self.on_reset()

    # Quectel
    def qeng(self) -> None:
        s = self.state
        if s.stat(True) in (1, 5):
            self._lines('+QENG: "servingcell","NOCONN","LTE","FDD",%s,%s,%s,%d,1850,3,5,5,%s,%d,%d,%d,%d,9,-,-' % (
                s.mcc, s.mnc, s.cell, s.pci, s.tac, s.signal_dbm - 20, -10, s.signal_dbm + 10, 15))
        else:
            self._lines('+QENG: "servingcell","SEARCH"')
        self._final("OK")

    def qgps_on(self, *args: str) -> None:
        if self.state.gnss_on:
            self._cme(504)  # session is ongoing
            return
        self.state.gnss_on = True
        self._final("OK")

    def qgps_off(self) -> None:
        if not self.state.gnss_on:
            self._cme(505)  # session not active
            return
        self.state.gnss_on = False
        self._final("OK")

    def qgps_query(self) -> None:
        self._lines("+QGPS: %d" % self.state.gnss_on)
        self._final("OK")

    def qccid(self) -> None:
        self._lines("+QCCID: %s" % ICCID)
        self._final("OK")

    # SIMCom
    def cpsi(self) -> None:
        s = self.state
        if s.stat(True) in (1, 5):
            self._lines("+CPSI: LTE,Online,%s-%s,0x%s,%d,%d,EUTRAN-BAND3,1850,5,5,%d,%d,%d,15" % (
                s.mcc, s.mnc, s.tac, int(s.cell, 16), s.pci, -100, (s.signal_dbm - 20) * 10, (s.signal_dbm + 10) * 10))
        elif s.stat(False) in (1, 5):
            self._lines("+CPSI: GSM,Online,%s-%s,0x%s,%d,-75,0,30,0" % (s.mcc, s.mnc, s.tac, int(s.cell, 16) & 0xFFFF))
        else:
            self._lines("+CPSI: NO SERVICE,Online")
        self._final("OK")

    def cgps_set(self, on: str, _mode: str | None = None) -> None:
        want = on == "1"
        if want and self.state.gnss_on:
            self._final("ERROR")  # the SIM7600 answers a second AT+CGPS=1 with ERROR
            return
        self.state.gnss_on = want
        self._final("OK")

    def cgps_query(self) -> None:
        self._lines("+CGPS: %d,1" % self.state.gnss_on)
        self._final("OK")

    def ciccid(self) -> None:
        self._lines("ICCID: %s" % ICCID)
        self._final("OK")


M = ModemModel
COMMON_TABLE: list[tuple[str, Callable[..., None]]] = [
    (r"", M.ok), (r"E([01])", M.ate), (r"\+CMEE=([012])", M.cmee), (r"I", M.ati), (r"\+CGMM", M.cgmm),
    (r"\+GMM", M.cgmm), (r"\+CGMI", M.cgmi), (r"\+CGSN", M.cgsn), (r"\+GSN", M.cgsn), (r"\+CIMI", M.cimi),
    (r"\+CPIN\?", M.cpin_query), (r"\+CFUN\?", M.cfun_query), (r"\+CFUN=(\d)(?:,(\d))?", M.cfun_set),
    (r"\+C(E?)REG=(\d)", M.reg_set), (r"\+C(E?)REG\?", M.reg_query), (r"\+COPS\?", M.cops_query),
    (r"\+COPS=\?", M.cops_test), (r"\+CSQ", M.csq), (r"\+CMGF=([01])", M.cmgf), (r"\+CMGS=(\d+)", M.cmgs),
    (r"\+CSCS=.*", M.ok), (r"&F", M.ok), (r"Z", M.ok), (r"V1", M.ok),
]
QUECTEL_TABLE: list[tuple[str, Callable[..., None]]] = [
    (r'\+QENG="servingcell"', M.qeng), (r"\+QGPS=1(,.*)?", M.qgps_on), (r"\+QGPSEND", M.qgps_off),
    (r"\+QGPS\?", M.qgps_query), (r"\+QCCID", M.qccid), (r"\+QPOWD(=\d)?", M.power_down),
]
SIMCOM_TABLE: list[tuple[str, Callable[..., None]]] = [
    (r"\+CPSI\?", M.cpsi), (r"\+CGPS=([01])(?:,(\d))?", M.cgps_set), (r"\+CGPS\?", M.cgps_query),
    (r"\+CICCID", M.ciccid), (r"\+CRESET", M.power_down), (r"\+CPOF", M.power_down),
]
