"""The privacy indicator: an output that is on exactly while a location session is active.

Chosen by spec, like the GNSS sources:
  none                  no output (the state is still in `tcu status`)
  file:PATH             writes "1\n" / "0\n" to PATH (CI and scripts watch it)
  sysfs-led:NAME        /sys/class/leds/NAME/brightness (a board LED, no library needed)
  gpio:PIN              a LED on a Raspberry Pi GPIO pin through gpiozero (optional dependency)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tcu.firmware.errors import UsageError


class Indicator(Protocol):
    def set(self, on: bool) -> None: ...

    def close(self) -> None: ...


class NoIndicator:
    def set(self, on: bool) -> None:
        pass

    def close(self) -> None:
        pass


class FileIndicator:
    """Writes the state atomically, so a reader never sees a half-written file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise UsageError("indicator file:%s: the directory %s does not exist" % (path, self.path.parent))
        self.set(False)

    def set(self, on: bool) -> None:
        tmp = self.path.with_name(".%s.tmp" % self.path.name)
        tmp.write_text("1\n" if on else "0\n")
        os.replace(tmp, self.path)

    def close(self) -> None:
        self.set(False)


class SysfsLed(FileIndicator):
    def __init__(self, name: str) -> None:
        brightness = Path("/sys/class/leds") / name / "brightness"
        if not brightness.exists():
            raise UsageError("indicator sysfs-led:%s: no such LED in /sys/class/leds" % name)
        self.path = brightness
        self.set(False)

    def set(self, on: bool) -> None:
        try:
            self.path.write_text("1" if on else "0")
        except OSError as err:
            raise UsageError("indicator %s: %s (is the unit in the right group?)"
                             % (self.path, err.strerror or err)) from None


def open_gpiozero(what: str, make: Callable[[Any], Any]) -> Any:
    """make(gpiozero) -> a device (LED, Button), with one clear UsageError naming `what` when
    gpiozero or a pin library is missing, the pin is busy or not ours to use."""
    try:
        import gpiozero  # optional: only on a Raspberry Pi
        from gpiozero.exc import BadPinFactory, GPIOZeroError, PinFactoryFallback
    except ImportError:
        raise UsageError("%s needs gpiozero: pip install gpiozero (on a Raspberry Pi: pip install "
                         "'tcu-emulator[pi]' and apt install python3-lgpio)" % what) from None
    try:
        with warnings.catch_warnings():  # one line on failure, not one warning per library tried
            warnings.simplefilter("ignore", PinFactoryFallback)
            return make(gpiozero)
    except BadPinFactory:
        raise UsageError("%s: no GPIO pin library (on a Raspberry Pi: apt install python3-lgpio, "
                         "and a venv made with --system-site-packages)" % what) from None
    except (GPIOZeroError, OSError, RuntimeError) as err:  # pin busy, no permission
        raise UsageError("%s: %s" % (what, err)) from None


class GpioLed:
    def __init__(self, pin: str) -> None:
        self.led: Any = open_gpiozero("indicator gpio:%s" % pin, lambda gpiozero: gpiozero.LED(int(pin)))

    def set(self, on: bool) -> None:
        self.led.value = 1 if on else 0

    def close(self) -> None:
        self.led.close()


def open_indicator(spec: str) -> Indicator:
    kind, _, arg = spec.partition(":")
    if kind == "none" and not arg:
        return NoIndicator()
    if kind == "file" and arg:
        return FileIndicator(arg)
    if kind == "sysfs-led" and arg:
        return SysfsLed(arg)
    if kind == "gpio" and arg.isdigit():
        return GpioLed(arg)
    raise UsageError("indicator %r: expected none, file:PATH, sysfs-led:NAME or gpio:PIN" % spec)
