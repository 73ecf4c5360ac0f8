"""`tcu audit verify LOG`: check the unit's disclosure audit log for deleted, edited or
reordered records. Exit 0 when intact, 1 when the chain is broken (each break named)."""

from __future__ import annotations

import argparse

from tcu.emulator.audit import verify


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("audit", help="the disclosure audit log")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    check = verbs.add_parser("verify", help="check the hash chain of an audit log")
    check.add_argument("log", help="the audit log file (its .head file beside it)")
    check.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    verdict = verify(args.log)
    if verdict.intact:
        print("audit: %s: %d records, chain intact" % (args.log, verdict.records))
        return 0
    for problem in verdict.problems:
        print("audit: %s: %s" % (args.log, problem))
    print("audit: %s: BROKEN (%d problems in %d records)" % (args.log, len(verdict.problems), verdict.records))
    return 1
