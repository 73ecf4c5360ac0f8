"""The one error hierarchy of tcu-emulator.

Every failure is raised as a subclass of TcuError, never returned as None/False.
CLIs catch TcuError, print its message and exit non-zero; anything else is a bug.
Portable: runs on MicroPython (no dataclasses, no typing at runtime).
"""


class TcuError(Exception):
    """Root of every error tcu-emulator raises on purpose."""


class UsageError(TcuError):
    """Bad input from a user: a CLI argument, a config value."""


class SourceError(TcuError):
    """A GNSS source cannot be opened or read (missing file, unplugged device)."""


class ProtocolError(TcuError):
    """Bytes from the network do not form a valid message of this protocol."""


class LinkError(TcuError):
    """The broker cannot be reached or refused the unit."""
