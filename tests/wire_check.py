"""Independent validation of wire bytes against protocol/tcu.cddl, with cddl-verifier."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cddl_verifier

SCHEMA = Path(__file__).resolve().parents[1] / "protocol" / "tcu.cddl"


@cache
def _validator() -> cddl_verifier.Validator:
    return cddl_verifier.Validator(SCHEMA.read_text())


def cddl_errors(data: bytes, rule: str = "uplink") -> list[str]:
    """The validator's complaints about data as an instance of rule; [] when it conforms."""
    result = _validator().validate(data, rule)
    return [] if result.valid else [d.message for d in result.diagnostics]


def assert_valid(data: bytes, rule: str = "uplink") -> None:
    errors = cddl_errors(data, rule)
    assert not errors, "%s does not match CDDL rule %r: %s" % (data.hex(), rule, errors[:2])
