"""Broker credentials, one way for every client: the URL's (percent-decoded), the config's or
the options' over them, a password file only its owner may read; never shown."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from tcu.emulator.config import read_file, resolve
from tcu.emulator.credentials import Credentials, credentials, read_password_file
from tcu.emulator.uplink import parse_broker_url, redact_url
from tcu.firmware.errors import UsageError
from tcu.tools.tls_options import broker_auth


def test_the_url_gives_them_percent_decoded_and_is_shown_without_them() -> None:
    broker = parse_broker_url("mqtt://unit%2F7:p%40ss%3Aw%C3%B6rd@127.0.0.1:1883")
    assert broker.auth == Credentials("unit/7", "p@ss:wörd".encode())
    assert broker.url == "mqtt://127.0.0.1:1883" and "p%40ss" not in repr(broker) and "wörd" not in repr(broker)
    assert "wörd" not in repr(broker.auth) and "<hidden>" in str(broker.auth)
    assert parse_broker_url("mqtts://name@h").auth == Credentials("name", None)
    assert parse_broker_url("mqtt://h").auth is None
    with pytest.raises(UsageError) as err:
        parse_broker_url("mqtt://u:secret@h:99999")
    assert "secret" not in str(err.value) and "mqtt://h:99999" in str(err.value)
    assert redact_url("mqtt://u:pw@h:1/x") == "mqtt://h:1/x"


def test_given_credentials_take_the_place_of_the_urls(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    os.chmod(pw, 0o600)
    auth = credentials(username="cfg-user", password_file=str(pw))
    assert parse_broker_url("mqtt://u:url-pw@h", auth).auth == Credentials("cfg-user", b"from-file")
    args = argparse.Namespace(username="opt-user", password_file=str(pw))
    assert broker_auth(args) == Credentials("opt-user", b"from-file")
    with pytest.raises(UsageError, match="needs a user name"):
        credentials(password="x")
    with pytest.raises(UsageError, match="not both"):
        credentials(username="u", password="x", password_file=str(pw))


def test_a_password_file_others_may_read_is_refused(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    for mode in (0o644, 0o640, 0o604):
        os.chmod(pw, mode)
        with pytest.raises(UsageError, match="others may read it .*chmod 600") as err:
            read_password_file(str(pw))
        assert "s3cret" not in str(err.value)
    os.chmod(pw, 0o400)
    assert read_password_file(str(pw)) == b"s3cret"
    with pytest.raises(UsageError, match="No such file"):
        read_password_file(str(tmp_path / "missing"))


def test_the_config_takes_them_in_broker_and_never_shows_the_password(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("cfg-secret")
    os.chmod(pw, 0o600)
    path = tmp_path / "tcu.toml"
    path.write_text('[broker]\nurl = "mqtt://127.0.0.1:1883"\nusername = "unit-0001"\npassword_file = "%s"\n' % pw)
    assert read_file(str(path))["username"] == "unit-0001"
    config = resolve(argparse.Namespace(config=str(path)), environ={})
    assert config.credentials() == Credentials("unit-0001", b"cfg-secret")
    path.write_text('[broker]\nurl = "mqtt://127.0.0.1:1883"\nusername = "u"\npassword = "inline-secret"\n')
    config = resolve(argparse.Namespace(config=str(path)), environ={})
    assert config.credentials() == Credentials("u", b"inline-secret") and "inline-secret" not in repr(config)
