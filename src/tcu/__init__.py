"""tcu-emulator: a private-by-design telematics control unit emulator.

The packages live in the checkout's top-level folders (firmware/, hal/, protocol/, emulator/,
tools/); src/tcu/ links them under one real package, so that setuptools, mypy, pyright and an
editor all see the same `tcu.*` names without an import hook.
"""

__version__ = "0.1.0"
