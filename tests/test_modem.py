"""The modem driver (hal/modem.py) against `tcu modem-sim`'s model on a real pty, and the
parsers on lines from the vendors' manuals and a real EG25 log."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_until

from tcu.emulator.modem_sim import ICCID, IMEI, IMSI
from tcu.emulator.modem_sim_io import ModemSim, apply, new_model
from tcu.hal.at import AtTimeout, ModemError
from tcu.hal.modem import ModemDriver, detect
from tcu.hal.modem_parse import csq_dbm, mask, parse_registration, quectel_servingcell, simcom_cpsi
from tcu.hal.modem_port import ModemPort, PortGone
from tcu.hal.sms_pdu import decode_pdu, encode_submit


def test_parsers_on_manual_lines() -> None:
    # a real EG25 (RouterOS log): SINR 18 dB, RSRP -104 dBm
    cell = quectel_servingcell('+QENG: "servingcell","NOCONN","LTE","FDD",216,70,127328,189,476,1,3,3,D17,'
                               '-104,-9,-77,18,-,-,-')
    assert (cell.rat, cell.rsrp_dbm, cell.rsrq_db, cell.sinr_db, cell.pci, cell.tac) == ("LTE", -104, -9, 18, 189,
                                                                                          "D17")
    assert quectel_servingcell('+QENG: "servingcell","SEARCH"').rat == ""
    # the SIM7600 manual's example: RSRQ -9.4 dB, RSRP -85.0 dBm in tenths
    cell = simcom_cpsi("+CPSI: LTE,Online,460-11,0x5A1E,187214780,257,EUTRAN-BAND3,1850,5,5,-94,-850,-545,15")
    assert (cell.rat, cell.rsrp_dbm, cell.rsrq_db, cell.sinr_db, cell.mcc_mnc) == ("LTE", -85.0, -9.4, 15, "460-11")
    assert simcom_cpsi("+CPSI: NO SERVICE,Online").rat == ""
    assert csq_dbm("+CSQ: 31,99") == -51 and csq_dbm("+CSQ: 0,99") == -113 and csq_dbm("+CSQ: 99,99") is None
    reg = parse_registration('+CEREG: 2,5,"1A2B","01C3D4E5",7', solicited=True)
    assert reg.registered and reg.data and reg.name == "roaming" and reg.act == 7
    assert parse_registration("+CREG: 3", solicited=False).name == "denied"
    with pytest.raises(ModemError):
        csq_dbm("+CSQ: x")


def test_identities_are_masked() -> None:
    assert mask(IMEI) == "…9990" and IMEI not in mask(IMEI)
    with pytest.raises(ModemError) as err:
        detect(["Foo", "IMEI: 867698049999990"], ["Bar"])
    assert "867698049999990" not in str(err.value) and "…9990" in str(err.value)


def test_sms_pdu_round_trip() -> None:
    pdu, length = encode_submit("+4915112345678", b"\x82\x00\xff" * 10)
    assert pdu.startswith("0011000D91") and length == len(bytes.fromhex(pdu)) - 1
    assert decode_pdu(pdu) == ("+4915112345678", b"\x82\x00\xff" * 10)
    try:
        from gsmmodem.pdu import decodeSmsPdu  # an independent decoder (python-gsmmodem-new)
    except ImportError:
        return
    decoded = decodeSmsPdu(pdu)
    assert decoded["type"] == "SMS-SUBMIT" and decoded["number"] == "+4915112345678"
    assert decoded["tpdu_length"] == length and decoded["validity"].days == 1
    assert decoded["text"].encode("latin-1") == b"\x82\x00\xff" * 10  # its 8-bit data, as code points


@pytest.fixture(params=["quectel-eg25", "simcom-sim7600"])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModemSim]:
    model = new_model(request.param)
    sent: list[str] = []
    model.on_sms = lambda pdu, mr: sent.append(pdu)
    sim = ModemSim(model, link=str(tmp_path / "modem"))
    sim.sent = sent  # type: ignore[attr-defined]
    thread = threading.Thread(target=sim.serve, daemon=True)
    thread.start()
    yield sim
    sim.close()
    thread.join(5)


def test_driver_against_the_sim(sim: ModemSim) -> None:
    urcs: list[str] = []
    port = ModemPort(sim.at_path, on_urc=urcs.append)
    driver = ModemDriver(port)
    status = driver.setup()
    assert status.profile == sim.model.state.profile and status.imei == IMEI
    assert driver.identities() == (IMSI, ICCID)
    status = driver.poll()
    assert status.registered and status.reg.name == "home" and status.operator == "TCU Test Net"
    assert status.signal_dbm == -75 and status.rat == "LTE" and status.cell.rsrp_dbm == -95
    assert "cell" not in status.as_dict() and IMEI not in str(status.as_dict())
    apply(sim, "coverage", "off")  # a tunnel: LTE gone, GSM still heard
    port.wait_urcs(0.3)
    assert any(u.startswith("+CEREG: 2") for u in urcs)
    for urc in urcs:
        driver.on_registration_urc(urc)
    assert not driver.status.registered and driver.status.sms_possible
    pdu, length = encode_submit("+15550001", b"\x01\x02")
    assert driver.send_sms(pdu, length) == 1 and sim.sent == [pdu]  # type: ignore[attr-defined]
    assert driver.poll().rat in ("", "GSM")
    driver.gnss(True)
    driver.gnss(True)  # idempotent: the "already on" error is not a failure
    assert sim.model.state.gnss_on
    driver.gnss(False)
    assert not sim.model.state.gnss_on
    port.close()


def test_a_stuck_modem_times_out_and_a_reset_is_survived(sim: ModemSim) -> None:
    port = ModemPort(sim.at_path)
    driver = ModemDriver(port)
    driver.setup()
    apply(sim, "stuck", "on")
    began = time.monotonic()
    with pytest.raises(AtTimeout, match="modem did not answer AT\\+CSQ within its 2 s limit"):
        port.command("AT+CSQ")
    assert 1.9 < time.monotonic() - began < 10  # its 2 s limit, not forever (a loaded machine lags)
    apply(sim, "stuck", "off")
    apply(sim, "reset")
    with pytest.raises(PortGone):
        for _ in range(20):
            port.command("AT")
            time.sleep(0.05)
    port.close()
    deadline = time.monotonic() + 5
    while True:  # the port comes back under the same name
        try:
            port = ModemPort(sim.at_path)
            ModemDriver(port).setup()
            break
        except ModemError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    port.close()


def test_close_ends_the_serve_loop_first_and_leaves_no_fd_open(tmp_path: Path) -> None:
    """Only the serve thread touches the ports: close() (and a reset asked from the control
    socket's thread) wait for it, so no fd is closed under its select() and no fd number is
    reused by the next pty while it still reads from it."""
    def open_fds() -> set[str]:
        return set(os.listdir("/proc/self/fd"))

    errors: list[BaseException | None] = []
    hook, threading.excepthook = threading.excepthook, lambda args: errors.append(args.exc_value)
    try:
        before = open_fds()
        for _ in range(3):
            sim = ModemSim(new_model("quectel-eg25"), link=str(tmp_path / "modem"), nmea_link=str(tmp_path / "nmea"))
            thread = threading.Thread(target=sim.serve, daemon=True)
            thread.start()
            port = ModemPort(sim.at_path)
            ModemDriver(port).setup()
            apply(sim, "reset")  # from this thread: the serve loop does it
            assert wait_until(lambda sim=sim: sim.resets == 1, timeout=5)
            port.close()
            sim.close()
            assert not thread.is_alive()  # close() returned after the loop ended
        assert open_fds() <= before  # the ptys and the wake pipe of each are closed
        assert errors == []
    finally:
        threading.excepthook = hook


def test_scenario_timeline(tmp_path: Path) -> None:
    from tcu.emulator.modem_sim_io import run_scenario
    from tcu.tools.modem_sim_cmd import load_scenario

    path = tmp_path / "s.toml"
    path.write_text('[[step]]\nt = 0\ncoverage = "off"\nsignal = -110\n[[step]]\nt = 10\nflood = 50\n'
                    '[[step]]\nt = 20\nerrors = 2\n')
    steps, repeat = load_scenario(str(path))
    sim = ModemSim(new_model("quectel-eg25"), link=str(tmp_path / "modem"))
    try:
        run_scenario(sim, steps, speed=100.0, stop=threading.Event(), repeat=repeat)  # 20 s in 0.2 s
        state = sim.model.state
        assert not state.coverage and state.signal_dbm == -110 and state.errors == 2
        assert sim.model.output().count(b"+QIND") == 25
    finally:
        sim.close()


def test_doctor_finds_the_modem(sim: ModemSim) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "tcu.tools.cli", "doctor", sim.at_path, "--window", "0.2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith(sim.at_path)][0]
    assert "modem AT port: %s" % sim.model.state.profile in line and "SIM READY, home on TCU Test Net" in line
    assert "-75 dBm" in line and IMEI not in result.stdout and "…9990" in line
