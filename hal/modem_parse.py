"""What the unit reads from a modem, parsed from AT response lines (pure functions).

Formats from 3GPP TS 27.007 (+CREG/+CEREG, +CSQ, +COPS, +CPIN, +CFUN), the Quectel
EC25/EG25-G AT Commands Manual (+QENG: "servingcell", +QGPS) and the SIMCom SIM7500/SIM7600
Series AT Command Manual (+CPSI, +CGPS). Unparseable lines raise ModemError.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcu.hal.at import ModemError

# 27.007 7.2 <stat>
REG_NOT_SEARCHING, REG_HOME, REG_SEARCHING, REG_DENIED, REG_UNKNOWN, REG_ROAMING = 0, 1, 2, 3, 4, 5
REG_NAMES = {0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
             6: "home (SMS only)", 7: "roaming (SMS only)", 8: "emergency only", 9: "home (CSFB not preferred)",
             10: "roaming (CSFB not preferred)"}
REGISTERED = (1, 5, 6, 7, 9, 10)  # for something (SMS at least)
DATA_REGISTERED = (1, 5, 9, 10)  # for data: 6 and 7 are "SMS only"
# 27.007 7.3 <AcT>
ACT_NAMES = {0: "GSM", 2: "UTRAN", 3: "GSM/EGPRS", 4: "HSDPA", 5: "HSUPA", 6: "HSPA", 7: "LTE", 8: "EC-GSM-IoT",
             9: "LTE-M", 10: "E-UTRA-5GCN", 11: "NR", 12: "NG-RAN", 13: "E-UTRA-NR"}


@dataclass(frozen=True)
class Registration:
    stat: int
    lac: str | None = None  # LAC or TAC, hex: cell identity, never sent while dormant
    cell: str | None = None
    act: int | None = None

    @property
    def registered(self) -> bool:
        return self.stat in REGISTERED

    @property
    def data(self) -> bool:
        return self.stat in DATA_REGISTERED

    @property
    def name(self) -> str:
        return REG_NAMES.get(self.stat, "stat %d" % self.stat)


@dataclass(frozen=True)
class ServingCell:
    rat: str  # "LTE", "WCDMA", "GSM", "NR5G-SA", ... or "" when there is none
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    mcc_mnc: str | None = None
    cell: str | None = None  # identity: stays on the unit unless a session's fields allow it
    tac: str | None = None
    pci: int | None = None


def _fields(line: str, prefix: str) -> list[str]:
    if not line.startswith(prefix):
        raise ModemError("expected a %s line, got %r" % (prefix.rstrip(":"), line[:60]))
    return [f.strip().strip('"') for f in line[len(prefix):].split(",")]


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ModemError("%s is not a number: %r" % (what, text[:20])) from None


def parse_registration(line: str, solicited: bool) -> Registration:
    """+CREG/+CGREG/+CEREG, the response to AT+CxREG? (solicited: <n> first) or the URC."""
    prefix = line.split(":", 1)[0] + ":"
    if prefix not in ("+CREG:", "+CGREG:", "+CEREG:"):
        raise ModemError("not a registration line: %r" % line[:60])
    fields = _fields(line, prefix)
    if solicited:
        fields = fields[1:]
    if not fields or not fields[0]:
        raise ModemError("registration line without a status: %r" % line[:60])
    stat = _int(fields[0], "registration status")
    lac = fields[1] if len(fields) > 1 and fields[1] else None
    cell = fields[2] if len(fields) > 2 and fields[2] else None
    act = _int(fields[3], "access technology") if len(fields) > 3 and fields[3].isdigit() else None
    return Registration(stat, lac, cell, act)


def csq_dbm(line: str) -> int | None:
    """+CSQ: <rssi>,<ber> in dBm (27.007 8.5: 0 is -113 dBm or less, 31 is -51 or more, 99 unknown)."""
    fields = _fields(line, "+CSQ:")
    rssi = _int(fields[0], "+CSQ rssi")
    if rssi == 99:
        return None
    if not 0 <= rssi <= 31:
        raise ModemError("+CSQ rssi out of range: %d" % rssi)
    return -113 + 2 * rssi


def dbm_to_csq(dbm: int | None) -> int:
    if dbm is None:
        return 99
    return max(0, min(31, (dbm + 113) // 2))


def operator(line: str) -> str | None:
    """+COPS: <mode>[,<format>,<oper>[,<AcT>]]: the operator's name, None when not registered."""
    fields = _fields(line, "+COPS:")
    return fields[2] if len(fields) > 2 and fields[2] else None


def sim_state(line: str) -> str:
    """+CPIN: READY | SIM PIN | SIM PUK | ..."""
    return _fields(line, "+CPIN:")[0]


def cfun(line: str) -> int:
    return _int(_fields(line, "+CFUN:")[0], "+CFUN")


def _opt(text: str, scale: float = 1.0) -> float | None:
    if text in ("", "-"):
        return None
    try:
        return float(text) / scale
    except ValueError:
        raise ModemError("not a number in a serving-cell line: %r" % text[:20]) from None


def quectel_servingcell(line: str) -> ServingCell:
    """+QENG: "servingcell",<state>,"LTE",<is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,<earfcn>,
    <band>,<UL_bw>,<DL_bw>,<TAC>,<RSRP>,<RSRQ>,<RSSI>,<SINR>,<CQI>,<tx_power>,<srxlev>
    (EC25/EG25-G manual 6.x). SINR is in dB as the EG25-G firmware reports it.
    "SEARCH" and "LIMSRV" states carry no cell."""
    fields = _fields(line, "+QENG:")
    if len(fields) < 2 or fields[0] != "servingcell":
        raise ModemError("not a servingcell line: %r" % line[:60])
    rat = fields[2] if len(fields) > 2 else ""
    if fields[1] in ("SEARCH", "LIMSRV") or len(fields) < 4:
        return ServingCell("")
    if rat == "LTE":
        if len(fields) < 17:
            raise ModemError("LTE servingcell line has %d fields, expected 17 or more" % len(fields))
        return ServingCell("LTE", _opt(fields[13]), _opt(fields[14]), _opt(fields[16]),
                           "%s-%s" % (fields[4], fields[5]), fields[6], fields[12], _int(fields[7], "PCID"))
    if rat == "WCDMA" and len(fields) >= 14:  # ...,<uarfcn>,<PSC>,<RAC>,<RSCP>,<ecio>,...
        return ServingCell("WCDMA", _opt(fields[11]), None, None, "%s-%s" % (fields[3], fields[4]), fields[6],
                           fields[5])
    return ServingCell(rat)


def simcom_cpsi(line: str) -> ServingCell:
    """+CPSI: LTE,Online,<MCC>-<MNC>,<TAC>,<SCellID>,<PCellID>,<band>,<earfcn>,<dlbw>,<ulbw>,
    <RSRQ>,<RSRP>,<RSSI>,<RSSNR> (SIM7600 manual: RSRQ, RSRP and RSSI in tenths of dB/dBm).
    "NO SERVICE" carries no cell."""
    fields = _fields(line, "+CPSI:")
    rat = fields[0]
    if rat == "NO SERVICE" or len(fields) < 2 or fields[1] != "Online":
        return ServingCell("")
    if rat == "LTE":
        if len(fields) < 14:
            raise ModemError("LTE +CPSI line has %d fields, expected 14" % len(fields))
        return ServingCell("LTE", _opt(fields[11], 10), _opt(fields[10], 10), _opt(fields[13]), fields[2],
                           fields[4], fields[3], _int(fields[5], "PCellID"))
    return ServingCell(rat, None, None, None, fields[2] if len(fields) > 2 else None)


def mask(identity: str | None) -> str:
    """IMEI, IMSI and ICCID are personal data: shown as their last 4 digits only."""
    if not identity:
        return "unknown"
    return "…" + identity[-4:] if len(identity) > 4 else "…"
