"""The --tls-* options shared by the commands that talk to a broker (`tcu run`, `tcu replay`,
`tcu backend`). A module of its own so that `tcu run` does not import replay_cmd, and with it
the embedded broker (amqtt, asyncio) it never uses: its resident size is a target (issue 7)."""

from __future__ import annotations

import argparse

from tcu.emulator.credentials import Credentials, credentials
from tcu.emulator.uplink import TlsOptions


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The --tls-* options and the broker's --username / --password-file (also in the URL)."""
    parser.add_argument("--tls-ca", metavar="FILE", help="mqtts://: the CA certificates to trust")
    parser.add_argument("--tls-cert", metavar="FILE", help="mqtts://: this client's certificate (mutual TLS)")
    parser.add_argument("--tls-key", metavar="FILE", help="mqtts://: this client's private key (mutual TLS)")
    parser.add_argument("--username", metavar="NAME", help="the broker user name (or mqtt://USER:PASSWORD@HOST)")
    parser.add_argument("--password-file", metavar="FILE",
                        help="the broker password, in a file only its owner can read (chmod 600)")


def broker_auth(args: argparse.Namespace) -> Credentials | None:
    """--username / --password-file, over the URL's user information (None: the URL's alone)."""
    return credentials(username=getattr(args, "username", None), password_file=getattr(args, "password_file", None))


def tls_options(args: argparse.Namespace) -> TlsOptions | None:
    if not (args.tls_ca or args.tls_cert or args.tls_key):
        return None
    return TlsOptions(args.tls_ca, args.tls_cert, args.tls_key)


def check_link(url: str, args: argparse.Namespace) -> TlsOptions | None:
    """The broker URL and the --tls-* files checked before anything starts (emulator/preflight.py):
    a missing file is one line naming it, exit 2, not a traceback in the link's thread."""
    from tcu.emulator.preflight import check_link_options

    tls = tls_options(args)
    check_link_options(url, tls)
    return tls
