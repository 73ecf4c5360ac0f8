"""How to install an optional extra, said so that it works where this tcu came from.

tcu-emulator is installed from a clone, not from a package index, so "pip install
'tcu-emulator[plot]'" fails ("no matching distribution"). Run from a clone (an editable
install, or the source tree), the hint names that clone and this interpreter's pip; from a
normal install, the extra's own packages.
"""

from __future__ import annotations

import sys
from pathlib import Path


def clone_root() -> Path | None:
    """The clone this tcu runs from (the folder with its pyproject.toml), None when installed."""
    root = Path(__file__).resolve().parents[1]  # tools/ is a top-level folder of the clone
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "tcu").is_dir() else None


def extra_hint(extra: str, packages: str) -> str:
    """'python -m pip install -e '/path/to/clone[plot]'' from a clone, else 'python -m pip install
    matplotlib' (packages: the extra's requirements, quoted as a shell needs them)."""
    pip = "%s -m pip install" % sys.executable
    root = clone_root()
    if root is not None:
        return "%s -e '%s[%s]' (the %s extra)" % (pip, root, extra, extra)
    return "%s %s (the %s extra)" % (pip, packages, extra)
