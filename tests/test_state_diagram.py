"""The README's state diagram is the transitions table, not a drawing that drifts from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "state_diagram.py"


def test_the_readme_diagram_is_generated_from_the_table() -> None:
    spec = importlib.util.spec_from_file_location("state_diagram", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.readme_section() == module.diagram(), "run: python scripts/state_diagram.py --write"
    assert "idle --> remote: trigger_on / start (lawful, stolen)" in module.diagram()
