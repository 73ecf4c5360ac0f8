"""Where the eCall MSD's memory goes: resident memory added by each module asn1tools loads, in
the order a crash session's warm-up loads them, then by compiling the MSD module.

    python bench/msd_import_cost.py

Each module is imported on its own (asn1tools' package __init__, which imports all of them,
is held back by a placeholder package for the measurement only), so each line is what that
module's import adds to VmRSS. The last lines are the real path (`tcu.emulator.msd`), measured
in a fresh interpreter, and its peak (VmHWM), the figure `bench/memory.py` reports.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import types

MODULES = ("bitstruct", "pyparsing", "asn1tools.codecs.permitted_alphabet", "asn1tools.codecs.per",
           "asn1tools.codecs.uper", "asn1tools.parser", "asn1tools.compiler")
REAL_PATH = """
import sys
def mb(key):
    return int(open('/proc/self/status').read().split(key + ':')[1].split()[0]) / 1024
before = mb('VmRSS')
from tcu.emulator import msd
from tcu.firmware.msd import MsdValues
from tcu.firmware.fix import Fix
msd.encode(MsdValues(1, True, False, Fix(1764633600000, 481374300, 115754900), []), msd.Vehicle())
print('%.1f %.1f %.1f' % (before, mb('VmRSS'), mb('VmHWM')))
"""


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


def by_module() -> list[tuple[str, float]]:
    spec = importlib.util.find_spec("asn1tools")
    if spec is None or spec.submodule_search_locations is None:
        sys.exit("msd_import_cost: asn1tools is not installed (pip install -e '.[test]')")
    placeholder = types.ModuleType("asn1tools")
    placeholder.__path__ = list(spec.submodule_search_locations)
    sys.modules["asn1tools"] = placeholder
    rows, last = [], rss_mb()
    for name in MODULES:
        importlib.import_module(name)
        now = rss_mb()
        rows.append((name, now - last))
        last = now
    return rows


def main() -> None:
    print("resident memory added by each module of asn1tools, MB (MiB)")
    for name, added in by_module():
        print("  %-38s %+5.1f" % (name, added))
    real = subprocess.run([sys.executable, "-c", REAL_PATH], capture_output=True, text=True)
    if real.returncode != 0:
        sys.exit("msd_import_cost: the MSD encoder failed in a fresh interpreter:\n" + real.stderr)
    before, after, peak = (float(x) for x in real.stdout.split())
    print("tcu.emulator.msd imported and compiled: VmRSS %.1f -> %.1f MB (+%.1f), VmHWM %.1f MB"
          % (before, after, after - before, peak))


if __name__ == "__main__":
    main()
