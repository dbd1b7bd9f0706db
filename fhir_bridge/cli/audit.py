"""``fhir-bridge audit verify|purge``: check the audit trail's hash chain; delete records past retention."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from fhir_bridge.audit.chain import PURGE_PATH, ChainKeyMismatch, Report
from fhir_bridge.cli.common import (
    EXIT_CONFIGURATION,
    EXIT_FAILURES,
    add_database,
    add_key_file,
    operator,
    refuse,
    services_from,
)
from fhir_bridge.errors import ConfigurationError

LISTED_PROBLEMS = 20
DAY_US = 86_400 * 1_000_000


def verify(arguments: argparse.Namespace) -> int:
    """Exit 0: the chain is intact; 1: a record was edited, deleted or inserted (the first is named)."""
    expect = None
    if arguments.expect:
        record_id, _, expected_hash = arguments.expect.partition(":")
        if not record_id.isdigit() or len(expected_hash) != 64:
            print("fhir-bridge: --expect takes ID:HASH, as a previous `audit verify` printed it", file=sys.stderr)
            return EXIT_CONFIGURATION
        expect = (int(record_id), expected_hash)
    with services_from(arguments) as services:
        try:
            report = services.audit_log.verify(expect)
        except ConfigurationError as error:
            return refuse(error)
        except ChainKeyMismatch as error:
            print(f"fhir-bridge: cannot verify: {error}", file=sys.stderr)
            return EXIT_CONFIGURATION
    _print(report)
    return 0 if report.intact else EXIT_FAILURES


def _print(report: Report) -> None:
    if not report.keyed:
        print(
            "warning: the chain is not keyed (no site secret, no audit key file): it detects damage, "
            "not a forger who recomputes it"
        )
    if report.purged_through is not None:
        print(f"records up to {report.purged_through} were purged")
    if report.unchained:
        print(f"{report.unchained} records were written before the chain existed: unchained, not checked")
    head = report.head
    if report.intact:
        span = f" ({report.first_chained} to {head.last_id})" if head and report.first_chained else ""
        print(f"intact: {report.chained} chained records{span}")
        if head is not None and head.last_id > head.start_id:
            print(f"head: {head.last_id}:{head.last_hash}  (keep it; `audit verify --expect` it later)")
        return
    first = report.problems[0]
    print(f"TAMPERED: the first bad record is {first.record_id}: {first.what}")
    for problem in report.problems[1:LISTED_PROBLEMS]:
        print(f"  also {problem}")
    if len(report.problems) > LISTED_PROBLEMS:
        print(f"  ... and {len(report.problems) - LISTED_PROBLEMS} more")


def purge(arguments: argparse.Namespace) -> int:
    """Delete records older than the retention, after checking the chain; the purge is recorded."""
    with services_from(arguments) as services:
        days = arguments.older_than_days or services.settings.audit_retention_days
        if days is None:
            print(
                "fhir-bridge: no retention: set FHIR_BRIDGE_AUDIT_RETENTION_DAYS or pass --older-than-days",
                file=sys.stderr,
            )
            return EXIT_CONFIGURATION
        try:
            log = services.audit_log
            report = log.verify()
        except ConfigurationError as error:
            return refuse(error)
        except ChainKeyMismatch as error:
            print(f"fhir-bridge: cannot purge: {error}", file=sys.stderr)
            return EXIT_CONFIGURATION
        if not report.intact and not arguments.force:
            _print(report)
            print("fhir-bridge: not purged: the chain is broken, and a purge would delete the evidence "
                  "(investigate first; --force purges anyway)", file=sys.stderr)  # fmt: skip
            return EXIT_FAILURES
        before = int(time.time() * 1_000_000 - days * DAY_US)
        deleted = log.purge(before, operator())
    print(f"deleted {deleted} audit records older than {days:g} days; the purge is recorded (`{PURGE_PATH}`)")
    return 0


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="check the audit trail's integrity; delete records past retention")
    actions = audit.add_subparsers(dest="action", required=True)
    checking = actions.add_parser(
        "verify", help="check the hash chain: exit 1 naming the first edited, deleted or inserted record"
    )
    checking.add_argument(
        "--expect", metavar="ID:HASH", help="a head printed by an earlier verify: must still be there"
    )
    add_database(checking)
    add_key_file(checking)
    checking.set_defaults(handler=verify)
    purging = actions.add_parser("purge", help="delete records older than the retention (the chain stays verifiable)")
    purging.add_argument("--older-than-days", type=float, help="default: FHIR_BRIDGE_AUDIT_RETENTION_DAYS")
    purging.add_argument("--force", action="store_true", help="purge even when the chain is broken")
    add_database(purging)
    add_key_file(purging)
    purging.set_defaults(handler=purge)
