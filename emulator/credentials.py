"""A broker's user name and password, taken the same way by every MQTT client of the project
(the unit, `tcu backend`, `tcu backend command`, `tcu doctor`): from the broker URL
(`mqtt://USER:PASSWORD@HOST`, percent-decoded), from `[broker]` in the config (`username`,
`password` or `password_file`) or from `--username` / `--password-file`.

A password file must be readable by its owner only (mode 600 or 400): one others can read is
refused, as ssh refuses a private key. A password never appears in a log line, `tcu status`,
`tcu doctor`, a repr or an exception message: `Credentials` hides it and broker URLs are
shown without their user information (`uplink.Broker.url`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from tcu.firmware.errors import UsageError

MAX_PASSWORD = 65535  # MQTT binary data: a 16-bit length


@dataclass(frozen=True)
class Credentials:
    username: str
    password: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "Credentials(username=%r, password=%s)" % (self.username, "<hidden>" if self.password else None)

    __str__ = __repr__


def read_password_file(path: str) -> bytes:
    """The password in `path` (one line; a trailing newline is not part of it). Refused unless
    only its owner may read it, and only if it is this process's own file or root's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise UsageError("password file %s: %s" % (path, err.strerror or err)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError("password file %s: not a regular file" % path)
        if info.st_mode & 0o077:
            raise UsageError("password file %s: others may read it (%s): chmod 600 %s" % (
                path, stat.filemode(info.st_mode), path))
        if info.st_uid not in (os.geteuid(), 0):
            raise UsageError("password file %s: owned by uid %d, not by this user (uid %d)" % (
                path, info.st_uid, os.geteuid()))
        data = os.read(fd, MAX_PASSWORD + 2)
    finally:
        os.close(fd)
    password = data.rstrip(b"\r\n")
    if len(password) > MAX_PASSWORD:
        raise UsageError("password file %s: longer than MQTT allows (65,535 bytes)" % path)
    return password


def credentials(url_username: str | None = None, url_password: str | None = None, *,
                username: str | None = None, password: str | None = None,
                password_file: str | None = None) -> Credentials | None:
    """The credentials to connect with: the config's or the options' over the URL's. A password
    (from anywhere) needs a user name."""
    if password is not None and password_file is not None:
        raise UsageError("give the broker password or a password file, not both")
    name = username if username is not None else url_username
    secret: bytes | None = None
    if password_file is not None:
        secret = read_password_file(password_file)
    elif password is not None:
        secret = password.encode()
    elif url_password is not None:
        secret = url_password.encode()
    if name is None:
        if secret is not None:
            raise UsageError("a broker password needs a user name (username, or mqtt://USER@HOST)")
        return None
    return Credentials(name, secret)
