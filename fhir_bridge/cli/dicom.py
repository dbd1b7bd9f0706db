"""``fhir-bridge ingest``: DICOM files and folders, read in parallel, written in batched transactions."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

from fhir_bridge.cli.common import EXIT_FAILURES, add_database, add_key_file, record_admin, refuse, services_from
from fhir_bridge.errors import ConfigurationError


def ingest(arguments: argparse.Namespace) -> int:
    from tqdm import tqdm

    from fhir_bridge.ingest.files import ingest_files

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with services_from(arguments) as services:
        try:
            dicom_ingest = services.dicom_ingest
        except ConfigurationError as error:
            return refuse(error)
        started = time.perf_counter()
        bar = tqdm(unit="file", file=sys.stderr, disable=True if arguments.no_progress else None, desc="ingest")
        try:
            summary = ingest_files(
                dicom_ingest,
                arguments.paths,
                workers=arguments.workers,
                batch_size=arguments.batch_size,
                progress=bar.update,
                on_total=lambda total: bar.reset(total=total),
            )
        finally:
            bar.close()
        outcome = "success" if not summary.failed else "partial" if summary.instances else "failed"
        detail = (
            f"stored {summary.instances} instances of {len(summary.studies)} studies; {len(summary.failed)} files "
            f"failed, {len(summary.skipped)} skipped"  # counts only: file names can name patients
        )
        recorded = record_admin(services, "ingest", "C", outcome, detail)
    elapsed = time.perf_counter() - started
    rate = summary.instances / elapsed if elapsed > 0 else 0.0
    print(
        f"ingested {summary.instances} instances of {len(summary.studies)} studies and {len(summary.series)} "
        f"series in {elapsed:.1f} s ({rate:.0f} instances/s)"
    )
    for title, rows in (("failed", summary.failed), ("stored with a warning", summary.warnings)):
        if rows:
            print(f"{title}: {len(rows)} files")
            for path, reason in rows:
                print(f"  {path}: {reason}")
    if summary.skipped:
        reasons = Counter(reason for _, reason in summary.skipped)
        listed = ", ".join(f"{reason}: {count}" for reason, count in sorted(reasons.items()))
        print(f"skipped: {len(summary.skipped)} files that are not instances ({listed})")
    return EXIT_FAILURES if summary.failed or not recorded else 0


def register(commands: Any) -> None:
    load = commands.add_parser("ingest", help="ingest DICOM files and folders (exit 1 when any file failed)")
    load.add_argument("paths", nargs="+", help="files or folders (walked recursively; no DICOMDIR needed)")
    add_database(load)
    add_key_file(load)
    load.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="header-reading processes")
    load.add_argument("--batch-size", type=int, default=500, help="instances per transaction (and Provenance)")
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.set_defaults(handler=ingest)
