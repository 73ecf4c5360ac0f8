"""`tcu backend migrate --store STORE`: upgrade a store's schema to this tcu's version."""

from __future__ import annotations

import argparse
import contextlib

from tcu.tools.store import SCHEMA_VERSION, describe, open_for_migration, store_errors


def register_verb(verbs: argparse._SubParsersAction) -> None:
    migrate = verbs.add_parser("migrate", help="create a store, or upgrade its schema to version %d" % SCHEMA_VERSION)
    migrate.add_argument("--store", required=True, metavar="STORE", help="a SQLite file or a postgresql:// URL")
    migrate.set_defaults(run=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    with store_errors(args.store), contextlib.closing(open_for_migration(args.store)) as store:
        before, after = store.migrate()
    name = describe(args.store)
    if before == after:
        print("%s: schema version %d, up to date" % (name, after))
    else:
        print("%s: schema version %s -> %d" % (name, "none (new store)" if before < 0 else before, after))
    return 0
