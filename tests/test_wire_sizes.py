"""The README's wire-size tables come from bench/wire_sizes.py and the golden vectors, not from memory."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def wire_sizes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wire_sizes", REPO / "bench" / "wire_sizes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["wire_sizes"] = module
    spec.loader.exec_module(module)
    return module


def test_the_readme_size_tables_are_the_command_s_output() -> None:
    module = wire_sizes()
    readme = (REPO / "README.md").read_text()
    assert module.readme_section(readme) == module.size_tables(), "run: python bench/wire_sizes.py --table --write"


def test_the_message_sizes_are_the_golden_vectors_bytes() -> None:
    module = wire_sizes()
    vectors = json.loads((REPO / "protocol" / "golden" / "index.json").read_text())["vectors"]
    for name, _, _ in module.MESSAGE_ROWS:
        assert vectors[name]["bytes"] == len((REPO / "protocol" / "golden" / (name + ".cbor")).read_bytes()), name
    assert module.report_size("crash", module.FIX) == vectors["report-crash"]["bytes"]
    assert module.report_size("theft", module.FIX) == vectors["report"]["bytes"]


def test_a_crash_report_is_no_larger_than_a_teltonika_record_even_on_a_busy_unit() -> None:
    module = wire_sizes()
    fix = module.Fix(0, 1, 1, alt_cm=0, speed_mms=0, course_cdeg=0, sats=0)
    assert module.report_size("crash", module.BUSY) <= len(module.teltonika_record(fix)) == 30
