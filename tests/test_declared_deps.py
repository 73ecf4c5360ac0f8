"""The tests' third-party imports are declared in pyproject.toml (the runtime dependencies or the
``test`` extra), which is all that CI's fresh checkout installs (scripts/test: ``pip install -e
'.[test]'``): a package only present in a developer's venv fails there, far from its cause."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"tcu", "firmware", "hal", "protocol", "emulator", "tools"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=~!\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports(path: Path) -> set[str]:
    """The top-level names a module imports absolutely, wherever in it the import is."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def test_every_package_the_tests_import_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]}
    local = {p.stem for d in ("tests", "bench", "scripts") for p in (ROOT / d).rglob("*.py")}
    local |= {p.name for p in (ROOT / "tests").iterdir() if p.is_dir()}
    distributions = packages_distributions()
    undeclared = sorted(
        "%s imports %s (%s)" % (path.relative_to(ROOT), top, ", ".join(distributions.get(top, ["not installed"])))
        for path in sorted((ROOT / "tests").rglob("*.py")) for top in _imports(path)
        if top not in sys.stdlib_module_names and top not in local | FIRST_PARTY
        and not {_name(d) for d in distributions.get(top, [])} & declared)
    assert not undeclared, undeclared
