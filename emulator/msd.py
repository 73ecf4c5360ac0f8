"""The eCall Minimum Set of Data (EN 15722, MSD version 2), encoded and decoded with asn1tools
(unaligned PER) from the published ASN.1 module, emulator/msd_v2.asn. CPython only: the
portable core gives the values (firmware/msd.py), this module the bytes.

asn1tools is a maintained ASN.1 compiler with UPER; a hand-packed bit writer is what the MSD
encoders we compared against are, and what the standard's module makes unnecessary.
Two wire-identical substitutions are made when compiling (the file keeps the published text):
  - RELATIVE-OID (AdditionalData.oid), which asn1tools' PER codec lacks, as OCTET STRING:
    X.691 encodes both as a length determinant and the BER contents octets;
  - the propulsion flags' BOOLEAN DEFAULT FALSE as BOOLEAN OPTIONAL: both take one presence bit
    in the preamble. asn1tools omits a value equal to its default; in-vehicle encoders (Legato's,
    the golden vector in tests/data/msd) send every flag, so this encoder does too, and a flag
    left out decodes as FALSE, as DEFAULT says.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tcu.firmware.errors import ProtocolError, UsageError
from tcu.firmware.msd import MsdValues

MODULE = Path(__file__).with_name("msd_v2.asn")
MSD_VERSION = 2
MAX_MSD_BYTES = 140  # EN 15722: the whole ECallMessage
VIN_ALPHABET = frozenset("ABCDEFGHJKLMNPRSTUVWXYZ0123456789")  # no I, O, Q
PROPULSION = ("gasolineTankPresent", "dieselTankPresent", "compressedNaturalGas", "liquidPropaneGas",
              "electricEnergyStorage", "hydrogenStorage", "otherStorage")
PROPULSION_BY_NAME = {"gasoline": "gasolineTankPresent", "diesel": "dieselTankPresent",
                      "cng": "compressedNaturalGas", "lpg": "liquidPropaneGas",
                      "electric": "electricEnergyStorage", "hydrogen": "hydrogenStorage", "other": "otherStorage"}
VEHICLE_TYPES = ("passengerVehicleClassM1", "busesAndCoachesClassM2", "busesAndCoachesClassM3",
                 "lightCommercialVehiclesClassN1", "heavyDutyVehiclesClassN2", "heavyDutyVehiclesClassN3",
                 "motorcyclesClassL1e", "motorcyclesClassL2e", "motorcyclesClassL3e", "motorcyclesClassL4e",
                 "motorcyclesClassL5e", "motorcyclesClassL6e", "motorcyclesClassL7e")
VEHICLE_TYPE_BY_NAME = {name.removesuffix("e")[-2:]: name for name in VEHICLE_TYPES}  # "M1" .. "N3", "L1" .. "L7"


class MsdError(ProtocolError):
    """Bytes that are not an MSD this decoder reads, or values outside the standard's ranges."""


_compiled: list[Any] = []
_compile_lock = threading.Lock()


def _spec() -> Any:
    """The compiled module (0.3-0.7 s once; warm_up() starts it at an emergency trigger)."""
    with _compile_lock:
        if not _compiled:
            import asn1tools

            text = MODULE.read_text().replace("oid RELATIVE-OID", "oid OCTET STRING")
            _compiled.append(asn1tools.compile_string(text.replace("BOOLEAN DEFAULT FALSE", "BOOLEAN OPTIONAL"),
                                                      "uper"))
        return _compiled[0]


def warm_up() -> None:
    """Compile the module in the background (once), so an MSD waits for it as little as may be."""
    if not _compiled:
        threading.Thread(target=_spec, name="tcu-msd-compile", daemon=True).start()


@dataclass(frozen=True)
class Vehicle:
    """The configuration's [vehicle]: what the MSD says about the car itself."""

    vin: str = "TCUEMULATR0000001"  # a placeholder VIN in the MSD's alphabet
    vehicle_type: str = "M1"  # EN 15722 VehicleType by class: M1..M3, N1..N3, L1..L7 (L1e..L7e)
    propulsion: tuple[str, ...] = ("gasoline",)  # gasoline, diesel, cng, lpg, electric, hydrogen, other
    passengers: int | None = None  # numberOfPassengers when known (0..255)

    def __post_init__(self) -> None:
        check_vehicle(self)


def _asn1_error() -> type[Exception]:
    import asn1tools

    error: type[Exception] = asn1tools.Error
    return error


def vehicle_of(table: Any, where: str = "vehicle") -> Vehicle:
    """A [vehicle] table (vin, type, propulsion, passengers) as a Vehicle; UsageError naming the key."""
    if not isinstance(table, dict):
        raise UsageError("%s: expected a table with vin, type, propulsion, passengers" % where)
    unknown = sorted(set(table) - {"vin", "type", "propulsion", "passengers"})
    if unknown:
        raise UsageError("%s.%s: unknown key: expected vin, type, propulsion, passengers" % (where, unknown[0]))
    propulsion = table.get("propulsion", list(Vehicle.propulsion))
    if not isinstance(propulsion, list):
        raise UsageError("%s.propulsion = %r: expected a list such as [\"gasoline\"]" % (where, propulsion))
    try:
        return Vehicle(vin=table.get("vin", Vehicle.vin), vehicle_type=table.get("type", Vehicle.vehicle_type),
                       propulsion=tuple(propulsion), passengers=table.get("passengers"))
    except UsageError as err:  # named "vehicle.KEY": say where the table came from
        raise UsageError("%s%s" % (where.removesuffix("vehicle"), err)) from None


def check_vehicle(vehicle: Vehicle, where: str = "vehicle") -> None:
    """UsageError naming the key for anything the MSD cannot carry."""
    vin = vehicle.vin
    if not isinstance(vin, str) or len(vin) != 17 or not set(vin) <= VIN_ALPHABET:
        raise UsageError("%s.vin = %r: a VIN is 17 characters of A-Z (no I, O, Q) and 0-9" % (where, vin))
    if vehicle.vehicle_type not in VEHICLE_TYPE_BY_NAME:
        raise UsageError("%s.type = %r: expected one of %s" % (where, vehicle.vehicle_type,
                                                              ", ".join(sorted(VEHICLE_TYPE_BY_NAME))))
    for name in vehicle.propulsion:
        if name not in PROPULSION_BY_NAME:
            raise UsageError("%s.propulsion: unknown %r: expected a list of %s"
                             % (where, name, ", ".join(PROPULSION_BY_NAME)))
    p = vehicle.passengers
    if p is not None and (type(p) is not int or not 0 <= p <= 255):
        raise UsageError("%s.passengers = %r: expected a whole number 0..255" % (where, p))


def structure(values: MsdValues, vehicle: Vehicle) -> dict[str, Any]:
    """The MSDStructure, with the standard's field names, for values and vehicle."""
    vin = vehicle.vin
    msd: dict[str, Any] = {
        "messageIdentifier": values.message_id,
        "control": {"automaticActivation": values.automatic, "testCall": values.test,
                    "positionCanBeTrusted": values.trusted,
                    "vehicleType": VEHICLE_TYPE_BY_NAME[vehicle.vehicle_type]},
        "vehicleIdentificationNumber": {"isowmi": vin[0:3], "isovds": vin[3:9], "isovisModelyear": vin[9],
                                        "isovisSeqPlant": vin[10:17]},
        "vehiclePropulsionStorageType": {name: name in {PROPULSION_BY_NAME[p] for p in vehicle.propulsion}
                                         for name in PROPULSION},
        "timestamp": values.timestamp,
        "vehicleLocation": {"positionLatitude": values.lat_mas, "positionLongitude": values.lon_mas},
        "vehicleDirection": values.direction,
    }
    if values.n1 is not None:
        msd["recentVehicleLocationN1"] = {"latitudeDelta": values.n1[0], "longitudeDelta": values.n1[1]}
    if values.n2 is not None:
        msd["recentVehicleLocationN2"] = {"latitudeDelta": values.n2[0], "longitudeDelta": values.n2[1]}
    if vehicle.passengers is not None:
        msd["numberOfPassengers"] = vehicle.passengers
    return msd


def encode_structure(msd: dict[str, Any]) -> bytes:
    """An ECallMessage (msdVersion 2 and the MSD) from an MSDStructure dict; MsdError if invalid."""
    try:
        inner = _spec().encode("MSDMessage", {"msdStructure": msd}, check_constraints=True)
        data: bytes = _spec().encode("ECallMessage", {"msdVersion": MSD_VERSION, "msd": inner})
    except (_asn1_error(), KeyError, TypeError) as err:
        raise MsdError("cannot encode this MSD: %s" % err) from None
    if len(data) > MAX_MSD_BYTES:
        raise MsdError("MSD of %d bytes exceeds EN 15722's %d" % (len(data), MAX_MSD_BYTES))
    return data


def encode(values: MsdValues, vehicle: Vehicle) -> bytes:
    return encode_structure(structure(values, vehicle))


def encoder_for(vehicle: Vehicle) -> Any:
    """The callable the firmware's Unit takes (MsdValues -> bytes)."""
    return functools.partial(encode, vehicle=vehicle)


def decode(data: bytes) -> dict[str, Any]:
    """An ECallMessage decoded: {"msdVersion": 2, "msd": {"msdStructure": ..., ...}} with the
    standard's field names; absent propulsion flags FALSE (their DEFAULT). MsdError otherwise."""
    if len(data) > MAX_MSD_BYTES:
        raise MsdError("%d bytes: an MSD is at most %d" % (len(data), MAX_MSD_BYTES))
    try:
        outer = _spec().decode("ECallMessage", bytes(data), check_constraints=True)
        if outer["msdVersion"] != MSD_VERSION:
            raise MsdError("msdVersion %d: this decoder reads version %d" % (outer["msdVersion"], MSD_VERSION))
        message = _spec().decode("MSDMessage", outer["msd"], check_constraints=True)
    except (_asn1_error(), ValueError, IndexError, KeyError) as err:
        raise MsdError("not an MSD (EN 15722 v2, UPER): %s" % err) from None
    flags = message["msdStructure"]["vehiclePropulsionStorageType"]
    for name in PROPULSION:
        flags.setdefault(name, False)
    extra = message.get("optionalAdditionalData")
    if extra is not None:  # JSON-friendly: the relative OID's BER octets and the data in hex
        message["optionalAdditionalData"] = {"oid": extra["oid"].hex(), "data": extra["data"].hex()}
    return {"msdVersion": outer["msdVersion"], "msd": message}
