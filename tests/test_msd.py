"""The eCall MSD (EN 15722 v2): a golden vector from an independent implementation, round trips
over generated fixes and vehicles, the ASN.1 constraints' edge values, an untrusted position."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcu.emulator import msd
from tcu.firmware.fix import MODE_2D, MODE_3D, Fix
from tcu.firmware.msd import DIRECTION_UNKNOWN, MsdValues, mas_of_e7

# Golden vector: Sierra Wireless's Legato framework (github.com/legatoproject/legato-af, MPL-2.0),
# the QMI eCall platform adaptor's test paQmiECallTest.c, "Example of imported MSD": 39 bytes with
# the value notation it was made from (as its comment gives it), reproduced here as test data.
LEGATO_MSD = bytes.fromhex("02251C0680E30A51439E2955D43800800437F80A3105669023F8A71166932185B004150043C040")
LEGATO_VALUES = {
    "messageIdentifier": 1,
    "control": {"automaticActivation": True, "testCall": False, "positionCanBeTrusted": True,
                "vehicleType": "passengerVehicleClassM1"},
    "vehicleIdentificationNumber": {"isowmi": "ECA", "isovds": "LLEXAM", "isovisModelyear": "P",
                                    "isovisSeqPlant": "LE02013"},
    "vehiclePropulsionStorageType": {"gasolineTankPresent": True, "dieselTankPresent": False,
                                     "compressedNaturalGas": False, "liquidPropaneGas": False,
                                     "electricEnergyStorage": False, "hydrogenStorage": False,
                                     "otherStorage": False},
    "timestamp": 1367878452,
    "vehicleLocation": {"positionLatitude": 18859320, "positionLongitude": 187996428},
    "vehicleDirection": 45,
    "recentVehicleLocationN1": {"latitudeDelta": 0, "longitudeDelta": 10},
    "recentVehicleLocationN2": {"latitudeDelta": 0, "longitudeDelta": 30},
    "numberOfPassengers": 2,
}


def test_golden_vector_decodes_to_its_values() -> None:
    assert msd.decode(LEGATO_MSD) == {"msdVersion": 2, "msd": {"msdStructure": LEGATO_VALUES}}


def test_golden_vector_reproduced_byte_for_byte() -> None:
    assert msd.encode_structure(LEGATO_VALUES) == LEGATO_MSD
    # ... and through the unit's own path: the firmware's values and a [vehicle] configuration
    values = MsdValues(1, True, False, Fix(0, 0, 0), [])
    values.trusted, values.timestamp, values.direction = True, 1367878452, 45
    values.lat_mas, values.lon_mas, values.n1, values.n2 = 18859320, 187996428, (0, 10), (0, 30)
    vehicle = msd.Vehicle(vin="ECALLEXAMPLE02013", vehicle_type="M1", propulsion=("gasoline",), passengers=2)
    assert msd.encode(values, vehicle) == LEGATO_MSD


def test_a_left_out_default_flag_decodes_false() -> None:
    """A canonical encoder omits the propulsion flags equal to DEFAULT FALSE: still read."""
    import asn1tools

    canonical = asn1tools.compile_string(msd.MODULE.read_text().replace("oid RELATIVE-OID", "oid OCTET STRING"),
                                         "uper")
    inner = canonical.encode("MSDMessage", {"msdStructure": LEGATO_VALUES})
    data = canonical.encode("ECallMessage", {"msdVersion": 2, "msd": inner})
    assert len(data) < len(LEGATO_MSD)
    assert msd.decode(data)["msd"]["msdStructure"] == LEGATO_VALUES


VIN = st.text(alphabet=sorted(msd.VIN_ALPHABET), min_size=17, max_size=17)
VEHICLES = st.builds(msd.Vehicle, vin=VIN, vehicle_type=st.sampled_from(sorted(msd.VEHICLE_TYPE_BY_NAME)),
                     propulsion=st.lists(st.sampled_from(sorted(msd.PROPULSION_BY_NAME)), unique=True).map(tuple),
                     passengers=st.none() | st.integers(0, 255))
FIXES = st.builds(Fix, time_ms=st.integers(0, 4294967295999), lat_e7=st.integers(-900000000, 900000000),
                  lon_e7=st.integers(-1800000000, 1800000000), mode=st.sampled_from([MODE_2D, MODE_3D]),
                  course_cdeg=st.none() | st.integers(0, 35999), hdop_c=st.none() | st.integers(0, 9999))


@given(VEHICLES, st.lists(FIXES, min_size=1, max_size=3), st.integers(1, 1000), st.booleans(), st.booleans())
def test_round_trip(vehicle: msd.Vehicle, fixes: list[Fix], message_id: int, automatic: bool, test: bool) -> None:
    values = MsdValues(message_id, automatic, test, fixes[-1], fixes[-2::-1])
    data = msd.encode(values, vehicle)
    assert len(data) <= msd.MAX_MSD_BYTES
    decoded = msd.decode(data)["msd"]["msdStructure"]
    assert decoded == msd.structure(values, vehicle)
    fix = fixes[-1]
    assert decoded["vehicleLocation"] == {"positionLatitude": mas_of_e7(fix.lat_e7),
                                          "positionLongitude": mas_of_e7(fix.lon_e7)}
    assert abs(decoded["vehicleLocation"]["positionLatitude"] - fix.lat_e7 * 0.36) <= 0.5
    assert decoded["control"]["testCall"] is test and decoded["control"]["automaticActivation"] is automatic
    assert decoded["messageIdentifier"] == message_id % 256
    assert ("recentVehicleLocationN1" in decoded) == (len(fixes) > 1)
    assert ("recentVehicleLocationN2" in decoded) == (len(fixes) > 2)
    for key in ("recentVehicleLocationN1", "recentVehicleLocationN2"):
        for delta in decoded.get(key, {}).values():
            assert -512 <= delta <= 511  # saturated at the standard's range, never an encode error
    assert decoded.get("numberOfPassengers") == vehicle.passengers


def _values(**fields: object) -> MsdValues:
    values = MsdValues(1, True, False, Fix(1_778_745_600_000, 0, 0, MODE_3D, hdop_c=90), [])
    for name, value in fields.items():
        setattr(values, name, value)
    return values


@pytest.mark.parametrize("fields", [
    {"lat_mas": -(1 << 31), "lon_mas": (1 << 31) - 1}, {"lat_mas": 324000000, "lon_mas": -648000000},
    {"timestamp": 0}, {"timestamp": (1 << 32) - 1}, {"direction": 0}, {"direction": 255},
    {"n1": (-512, 511), "n2": (511, -512)}, {"message_id": 0}, {"message_id": 255},
])
def test_constraint_edges_encode(fields: dict[str, object]) -> None:
    decoded = msd.decode(msd.encode(_values(**fields), msd.Vehicle()))["msd"]["msdStructure"]
    assert decoded == msd.structure(_values(**fields), msd.Vehicle())


@pytest.mark.parametrize("fields", [
    {"lat_mas": 1 << 31}, {"lon_mas": -(1 << 31) - 1}, {"timestamp": 1 << 32}, {"timestamp": -1},
    {"direction": 256}, {"n1": (512, 0)}, {"n2": (0, -513)}, {"message_id": 256},
])
def test_beyond_the_constraints_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(msd.MsdError):
        msd.encode(_values(**fields), msd.Vehicle())


def test_untrusted_position_and_unknown_direction() -> None:
    for fix in (Fix(0, 1, 1, MODE_2D, hdop_c=90), Fix(0, 1, 1, MODE_3D), Fix(0, 1, 1, MODE_3D, hdop_c=501)):
        decoded = msd.decode(msd.encode(MsdValues(1, False, False, fix, []), msd.Vehicle()))
        assert decoded["msd"]["msdStructure"]["control"]["positionCanBeTrusted"] is False
        assert decoded["msd"]["msdStructure"]["vehicleDirection"] == DIRECTION_UNKNOWN
    assert MsdValues(1, False, False, Fix(0, 1, 1, MODE_3D, hdop_c=500), []).trusted


@pytest.mark.parametrize("data", [b"", b"\x01", LEGATO_MSD[:-3], b"\x03" + LEGATO_MSD[1:], bytes(141)])
def test_decode_refuses_what_is_not_an_msd(data: bytes) -> None:
    with pytest.raises(msd.MsdError):
        msd.decode(data)


@pytest.mark.parametrize("fields", [{"vin": "ECALLEXAMPLE0201"}, {"vin": "ECALLEXAMPLE0201O"},
                                    {"vehicle_type": "X9"}, {"propulsion": ("steam",)}, {"passengers": 256}])
def test_vehicle_config_is_checked(fields: dict[str, object]) -> None:
    with pytest.raises(Exception, match="vehicle"):
        msd.Vehicle(**fields)  # type: ignore[arg-type]


def test_readme_msd_sizes_are_what_the_command_measures() -> None:
    """The README's MSD rows are bench/msd_sizes.py's output (python bench/msd_sizes.py --readme)."""
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo / "bench"))
    try:
        import msd_sizes
    finally:
        sys.path.remove(str(repo / "bench"))
    block = (repo / "README.md").read_text().split(msd_sizes.BEGIN + "\n", 1)[1].split(msd_sizes.END, 1)[0]
    assert block.splitlines() == msd_sizes.rows()
    for row in msd_sizes.rows()[2:]:  # "34 B first (...), 39 B with N-1, N-2; ...": both MSDs within the limit
        first, resent = re.findall(r"(\d+) B (?:first|with)", row)
        assert int(first) < int(resent) <= msd.MAX_MSD_BYTES


def _tcu(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tcu.tools.cli", *args], input=stdin, capture_output=True,
                          timeout=60)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def test_tcu_msd_decode_hex_stdin_and_bad_input() -> None:
    import json

    code, out, _ = _tcu("msd", "decode", LEGATO_MSD.hex())
    assert code == 0 and json.loads(out)["msd"]["msdStructure"] == LEGATO_VALUES and json.loads(out)["bytes"] == 39
    code, out, _ = _tcu("msd", "decode", "-", stdin=LEGATO_MSD)  # raw bytes on stdin
    assert code == 0 and json.loads(out)["msd"]["msdStructure"]["numberOfPassengers"] == 2
    code, out, _ = _tcu("msd", "decode", "-", stdin=LEGATO_MSD.hex().encode() + b"\n")
    assert code == 0 and json.loads(out)["msdVersion"] == 2
    for bad in ("zz", LEGATO_MSD[:10].hex()):
        code, out, err = _tcu("msd", "decode", bad)
        assert code != 0 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_vehicle_section_of_the_config(tmp_path: object) -> None:
    from pathlib import Path

    from tcu.emulator.config import Config, read_file
    from tcu.firmware.errors import UsageError

    folder = Path(str(tmp_path))
    good = folder / "good.toml"
    good.write_text('[vehicle]\nvin = "ECALLEXAMPLE02013"\ntype = "N1"\npropulsion = ["diesel", "electric"]\n'
                    "passengers = 3\n")
    vehicle = Config(**read_file(str(good))).vehicle_data()
    assert vehicle == msd.Vehicle("ECALLEXAMPLE02013", "N1", ("diesel", "electric"), 3)
    assert Config().vehicle_data() == msd.Vehicle()
    for body, key in (('vin = "SHORT"', "vehicle.vin"), ('colour = "red"', "vehicle.colour"),
                      ('propulsion = "diesel"', "vehicle.propulsion"), ("passengers = -1", "vehicle.passengers")):
        bad = folder / "bad.toml"
        bad.write_text("[vehicle]\n%s\n" % body)
        with pytest.raises(UsageError, match=r"config .*bad.toml: %s" % key.replace(".", r"\.")):
            read_file(str(bad))
