"""``fhir-bridge ingest-clinical`` and ``fhir-bridge mappings check|list``: clinical data from the command line."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from fhir_bridge.cli.common import (
    EXIT_CONFIGURATION,
    EXIT_FAILURES,
    add_database,
    add_key_file,
    record_admin,
    refuse,
    services_from,
)
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.mapping.clinical import MappingRegistry

LISTED_FAILURES = 50


def _registry(arguments: argparse.Namespace) -> MappingRegistry:
    with services_from(arguments) as services:  # the mapping registry needs no database
        return services.mappings


def check(arguments: argparse.Namespace) -> int:
    """Report every problem of each mapping file with its line and JSON pointer; exit 1 when any has one."""
    registry = _registry(arguments)
    failed = False
    for name in arguments.files:
        path = Path(name)
        problems = registry.check(path) if path.is_file() else None
        if problems is None:
            print(f"{name}: no such file")
            failed = True
        elif problems:
            failed = True
            print(f"{name}: {len(problems)} problem{'s' if len(problems) > 1 else ''}")
            for problem in problems:
                print(f"  {name}:{problem.line or '-'}: {problem.pointer or '/'}: {problem.message}")
        else:
            print(f"{name}: ok")
    return EXIT_FAILURES if failed else 0


def list_mappings(arguments: argparse.Namespace) -> int:
    registry = _registry(arguments)
    for name in registry.names():
        print(f"{name}\t{registry.path(name)}")
    print(f"input formats: {', '.join(sorted(registry.readers))}")
    return 0


def ingest(arguments: argparse.Namespace) -> int:
    """Ingest each file through the mapping (one call per file: ``--atomic`` is all or nothing per file)."""
    from tqdm import tqdm

    from fhir_bridge.ingest.clinical import IngestRefused, RecordResult, Summary
    from fhir_bridge.ingest.provenance import Source
    from fhir_bridge.mapping.clinical import MappingError, ReaderOptions, UnknownMapping

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    services = services_from(arguments)
    try:
        registry, clinical = services.mappings, services.clinical_ingest
    except ConfigurationError as error:
        services.close()
        return refuse(error)
    try:
        try:
            mapping = registry.load(arguments.mapping)
            fixed = registry.reader(arguments.format) if arguments.format else None
        except (UnknownMapping, MappingError) as error:
            problems = getattr(error, "problems", None)
            print(f"fhir-bridge: the mapping cannot be used, nothing was read: {error if not problems else ''}")
            for problem in problems or []:
                print(f"  {problem}")
            return EXIT_CONFIGURATION
        total = Summary()
        failures: list[str] = []
        report = open(arguments.report, "wb") if arguments.report else None  # noqa: SIM115
        started = time.perf_counter()
        source = Source("command line", f"fhir-bridge ingest-clinical on {socket.gethostname()}")
        for name in arguments.files:
            path = Path(name)
            reader = fixed or registry.reader_for_file(path)
            if reader is None and mapping.source_format:
                reader = registry.reader(mapping.source_format)
            if not path.is_file() or reader is None:
                failures.append(
                    f"{name}: {'no such file' if not path.is_file() else 'unknown input format (--format)'}"
                )
                total.failed += 1
                continue
            size = path.stat().st_size
            with (
                path.open("rb") as stream,
                tqdm(
                    total=size,
                    unit="B",
                    unit_scale=True,
                    desc=path.name,
                    file=sys.stderr,
                    disable=arguments.no_progress,
                ) as bar,
            ):

                def done(
                    result: RecordResult, stream: Any = stream, bar: Any = bar, name: str = name, size: int = size
                ) -> None:
                    if (result.row % 100 == 0 or result.status == "failed") and not stream.closed:
                        bar.update(min(stream.tell(), size) - bar.n)
                    where = f"row {result.row}" + (f" (line {result.line})" if result.line else "")
                    if arguments.dry_run:  # per row: what would be written, and every problem
                        made = ", ".join(f"{r['reference']} ({r['status']})" for r in result.resources)
                        print(f"{name} {where}: {result.status}" + (f": {made}" if made else ""))
                    if result.status in ("failed", "not-written"):
                        for error in result.errors:
                            column = f", column {error.column}" if error.column else ""
                            failures.append(f"{name} {where}{column}: {error.reason}")
                    if report is not None:
                        report.write(orjson.dumps({"file": name, **result.as_json()}) + b"\n")

                records = reader.read(stream, ReaderOptions(mapping.delimiter, mapping.encoding))
                try:
                    summary = clinical.ingest(
                        mapping,
                        records,
                        source,
                        atomic=arguments.atomic,
                        on_result=done,
                        batch_size=arguments.batch_size,
                        dry_run=arguments.dry_run,
                    )
                except IngestRefused as error:
                    print(f"fhir-bridge: {name}: {error}")
                    if report is not None:
                        report.close()
                    return EXIT_CONFIGURATION
                bar.update(size - bar.n)
            for key in ("records", "created", "updated", "unchanged", "failed", "not_written"):
                setattr(total, key, getattr(total, key) + getattr(summary, key))
        if report is not None:
            report.close()
        bad = total.failed + total.not_written
        outcome = "success" if not bad else "partial" if total.records > bad else "failed"
        detail = (
            f"{total.records} records of {len(arguments.files)} files through the mapping {mapping.name}: "
            f"{total.created} created, {total.updated} updated, {total.unchanged} unchanged, {total.failed} failed"
            + (f", {total.not_written} not written" if total.not_written else "")
        )
        recorded = record_admin(services, "ingest-clinical", "C", outcome, detail)
    finally:
        services.close()
    elapsed = time.perf_counter() - started
    rate = total.records / elapsed if elapsed > 0 else 0.0
    print(
        ("dry run, nothing was written: " if arguments.dry_run else "")
        + f"ingested {total.records} records of {len(arguments.files)} files through {mapping.name} in {elapsed:.1f} s "
        f"({rate:.0f} records/s): {total.created} created, {total.updated} updated, {total.unchanged} unchanged, "
        f"{total.failed} failed" + (f", {total.not_written} not written (atomic)" if total.not_written else "")
    )
    if failures:
        print(f"failed: {len(failures)} problems")
        for line in failures[:LISTED_FAILURES]:
            print(f"  {line}")
        if len(failures) > LISTED_FAILURES:
            print(f"  ... and {len(failures) - LISTED_FAILURES} more" + ("" if arguments.report else " (see --report)"))
    return EXIT_FAILURES if total.failed or total.not_written or not recorded else 0


def register(commands: Any) -> None:
    """Add ``ingest-clinical`` and ``mappings`` to the command's sub-commands."""
    load = commands.add_parser(
        "ingest-clinical",
        help="ingest clinical exports (CSV, NDJSON, JSON, HL7 v2) through a mapping (exit 1 on failures)",
    )
    load.add_argument("files", nargs="+", help="input files")
    load.add_argument("--mapping", required=True, help="a mapping name (e.g. cancer-diagnosis) or a mapping file")
    load.add_argument("--format", help="input format (default: from the file suffix, else the mapping's)")
    load.add_argument("--atomic", action="store_true", help="all or nothing per file (default: per record)")
    load.add_argument("--batch-size", type=int, default=200, help="records per transaction (and Provenance)")
    load.add_argument("--report", help="write every record's result to this NDJSON file")
    load.add_argument(
        "--dry-run",
        action="store_true",
        help="map, check and resolve everything, write nothing: print each row's result "
        "(--report gets the resources that would be written)",
    )
    load.add_argument("--mappings-dir", type=Path, help="the site's mapping folder (else FHIR_BRIDGE_MAPPINGS_DIR)")
    add_database(load)
    add_key_file(load)
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.set_defaults(handler=ingest)
    mappings = commands.add_parser("mappings", help="check or list clinical mapping files")
    actions = mappings.add_subparsers(dest="action", required=True)
    checking = actions.add_parser("check", help="report every problem of mapping files (exit 1 when any)")
    checking.add_argument("files", nargs="+", help="mapping files (YAML or JSON)")
    checking.add_argument("--mappings-dir", type=Path, help=argparse.SUPPRESS)
    checking.set_defaults(handler=check)
    listing = actions.add_parser("list", help="the mappings found, and the input formats (plugins included)")
    listing.add_argument("--mappings-dir", type=Path, help="the site's mapping folder (else FHIR_BRIDGE_MAPPINGS_DIR)")
    listing.set_defaults(handler=list_mappings)
