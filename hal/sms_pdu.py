"""SMS PDUs (3GPP TS 23.040) carrying 8-bit data: SMS-SUBMIT out, SUBMIT or DELIVER in.

Hand-written because the PyPI PDU libraries encode text only (python-gsmmodem-new's
encodeSmsSubmitPdu takes a str and picks GSM-7 or UCS-2; smspdudecoder only decodes) and
the unit sends binary CBOR with DCS 0x04 (8-bit data). The tests check the decoder against
python-gsmmodem-new's decodeSmsPdu when it is installed.
"""

from __future__ import annotations

from tcu.firmware.errors import UsageError

MAX_DATA = 140  # octets of user data in one SMS
DCS_8BIT = 0x04
VP_24H = 0xA7  # relative validity: (167 - 143) * 30 min + 12 h = 24 h


def _address(number: str) -> bytes:
    digits = number.lstrip("+")
    if not digits.isdigit() or not 1 <= len(digits) <= 20:
        raise UsageError("an SMS number is + and digits, up to 20: %r" % number)
    toa = 0x91 if number.startswith("+") else 0x81  # international / unknown, ISDN plan
    padded = digits + ("F" if len(digits) % 2 else "")
    swapped = "".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2))
    return bytes([len(digits), toa]) + bytes.fromhex(swapped)


def encode_submit(number: str, data: bytes, reference: int = 0) -> tuple[str, int]:
    """(PDU as hex for AT+CMGS, the TPDU length AT+CMGS=<length> takes). SMSC from the SIM."""
    if len(data) > MAX_DATA:
        raise UsageError("%d bytes do not fit one SMS (at most %d)" % (len(data), MAX_DATA))
    tpdu = bytes([0x11, reference & 0xFF]) + _address(number) + bytes([0x00, DCS_8BIT, VP_24H, len(data)]) + data
    return "00" + tpdu.hex().upper(), len(tpdu)


def _read_address(pdu: bytes, i: int) -> tuple[str, int]:
    digits, toa = pdu[i], pdu[i + 1]
    octets = (digits + 1) // 2
    raw = pdu[i + 2:i + 2 + octets].hex().upper()
    if len(raw) < octets * 2:
        raise UsageError("SMS PDU ends inside an address")
    number = "".join(raw[k + 1] + raw[k] for k in range(0, len(raw), 2))[:digits]
    if (toa & 0x70) == 0x50:
        raise UsageError("alphanumeric sender addresses are not supported")
    return ("+" if (toa & 0x70) == 0x10 else "") + number, i + 2 + octets


def decode_pdu(text: str) -> tuple[str, bytes]:
    """(the other party's number, the 8-bit user data) of an SMS-SUBMIT or SMS-DELIVER in hex
    (with its SMSC part); UsageError for anything else."""
    try:
        pdu = bytes.fromhex(text.strip())
    except ValueError:
        raise UsageError("an SMS PDU is hexadecimal: %r" % text[:40]) from None
    try:
        i = pdu[0] + 1  # the SMSC part
        first = pdu[i]
        mti, i = first & 0x03, i + 1
        if mti == 1:  # SUBMIT: MR, DA, PID, DCS, VP
            i += 1
            number, i = _read_address(pdu, i)
            dcs, i = pdu[i + 1], i + 2
            vpf = (first >> 3) & 0x03
            i += {0: 0, 2: 1}.get(vpf, 7)
        elif mti == 0:  # DELIVER: OA, PID, DCS, SCTS
            number, i = _read_address(pdu, i)
            dcs, i = pdu[i + 1], i + 2 + 7
        else:
            raise UsageError("not an SMS-SUBMIT or SMS-DELIVER (TP-MTI %d)" % mti)
        if (dcs & 0xC0) != 0 or (dcs & 0x0C) != DCS_8BIT:
            raise UsageError("not 8-bit data (TP-DCS 0x%02x)" % dcs)
        length = pdu[i]
        data = pdu[i + 1:i + 1 + length]
    except IndexError:
        raise UsageError("SMS PDU is truncated") from None
    if len(data) != length:
        raise UsageError("SMS PDU is truncated: %d of %d data octets" % (len(data), length))
    if first & 0x40:  # a user data header (concatenation): skip it
        data = data[data[0] + 1:] if data else data
    return number, data
