"""DICOM C-STORE ingest benchmark: `fhir-bridge dimse` fed by dcmtk's storescu, against bare header parsing.

One run, the same files for every row: ``--studies`` x ``--series`` x ``--instances`` Part-10 files made
from pydicom's bundled test files (CT, MR, an MR with overlays, implicit VR; the uncompressed ones of
``benchmarks.dicom_ingest``, which storescu sends without converting), as a folder per study.

- (a) the baseline, pydicom reading every header (``stop_before_pixels``) in one process, measured
  again right before each row;
- for each database and each number of associations in ``--associations``: ``fhir-bridge dimse`` in a
  subprocess (fresh database, fresh spool) and that many storescu processes at once, each sending
  its share of the study folders over its own association. The time runs from the first sender's
  start until every instance is written to the store (the senders have exited and the spool is
  empty), so it counts acknowledging (header read, checks, fdatasync) and the batched writes; the
  store's instance count is checked afterwards. The senders' own time is printed beside it;
- for each number of associations, the same senders against pynetdicom answering 0000 and doing
  nothing else: the ceiling the protocol stack allows on this machine, whatever the listener does.

``python -m benchmarks.dicom_dimse --help`` lists the options. Needs dcmtk (``storescu``, ``echoscu``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import orjson
from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from sqlalchemy import create_engine, text

from benchmarks.dicom_ingest import (
    DEFAULT_POSTGRES_URL,
    TARGET,
    Row,
    _environment,
    _executable,
    _free_port,
    bridge_reader,
    database,
    header_parse,
    print_rows,
)
from fhir_bridge.listeners.dimse import DimseListener
from tests.dicom_samples import study_set, write_tree

BASES = ("CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "MR_small_implicit.dcm")
AE_TITLE = "FHIR_BRIDGE"


@contextmanager
def listener(url: str, scratch: Path, batch_size: int) -> Iterator[tuple[int, Path]]:
    """``fhir-bridge dimse`` on a free port; yields the port and its spool folder."""
    port, spool = _free_port(), scratch / f"spool-{time.monotonic_ns()}"
    environment = {
        **_environment(),
        "FHIR_BRIDGE_DATABASE_URL": url,
        "FHIR_BRIDGE_DIMSE_ALLOWED_CALLERS": '["*@127.0.0.1"]',
        "FHIR_BRIDGE_DIMSE_SPOOL_DIR": str(spool),
        "FHIR_BRIDGE_DIMSE_BATCH_SIZE": str(batch_size),
    }
    log = scratch / f"dimse-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [_executable(), "dimse", "--port", str(port)], cwd=scratch, env=environment, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["echoscu", "-aec", AE_TITLE, "127.0.0.1", str(port)], capture_output=True).returncode:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"fhir-bridge dimse did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield port, spool
    finally:
        process.terminate()
        process.wait(timeout=60)


def _stored_instances(url: str) -> int:
    """Instances in the store's current ImagingStudy resources (read with SQL: no app needed)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT content FROM resource WHERE res_type = 'ImagingStudy' AND NOT deleted")
            ).all()
    finally:
        engine.dispose()
    return sum(orjson.loads(row[0])["numberOfInstances"] for row in rows)


def _send(port: int, folders: list[Path], associations: int) -> None:
    """storescu processes at once, one association each, each with its share of the study folders."""
    shares = [folders[i::associations] for i in range(associations)]
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", AE_TITLE, "+sd", "+r", "127.0.0.1", str(port), *map(str, share)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for share in shares
    ]
    for sender in senders:
        _, errors = sender.communicate(timeout=3600)
        if sender.returncode != 0:
            raise SystemExit(f"storescu failed:\n{errors.decode(errors='replace')[-3000:]}")


def protocol_floor(folders: list[Path], count: int, associations: int) -> Row:
    """pynetdicom answering 0000 without reading or keeping anything: what the protocol stack alone allows."""
    answered = []
    ae = AE(AE_TITLE)
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, AllTransferSyntaxes)
    handlers = [(evt.EVT_C_STORE, lambda event: answered.append(1) or 0), (evt.EVT_CONN_OPEN, DimseListener._on_open)]
    server = ae.start_server(("127.0.0.1", _free_port()), block=False, evt_handlers=handlers)
    try:
        started = time.perf_counter()
        _send(server.server_address[1], folders, associations)
        seconds = time.perf_counter() - started
    finally:
        server.shutdown()
    if len(answered) != count:
        raise SystemExit(f"{len(answered)} C-STORE requests answered, {count} sent")
    return Row(
        f"protocol_floor_{associations}",
        f"    pynetdicom answering only, {associations} assoc.",
        seconds,
        count,
        "no reading, no spool, no store: the ceiling of the protocol stack",
    )


def c_store(url: str, scratch: Path, folders: list[Path], count: int, associations: int, batch_size: int) -> Row:
    with listener(url, scratch, batch_size) as (port, spool):
        started = time.perf_counter()
        _send(port, folders, associations)
        sent = time.perf_counter() - started
        while any(spool.glob("*.seg")):
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    stored = _stored_instances(url)
    if stored != count:
        raise SystemExit(f"{stored} instances in the store, {count} sent")
    kind = url.split(":", 1)[0].split("+")[0]
    return Row(
        f"c_store_{kind}_{associations}",
        f"C-STORE, {associations} association{'s' if associations > 1 else ''} -> {kind}",
        seconds,
        count,
        f"acknowledged in {sent:.2f} s; batches of {batch_size}",
    )


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="python -m benchmarks.dicom_dimse", description=__doc__.split("\n")[0])
    options.add_argument("--studies", type=int, default=20)
    options.add_argument("--series", type=int, default=5, help="series per study")
    options.add_argument("--instances", type=int, default=20, help="instances per series")
    options.add_argument("--associations", default="1,4", help="comma-separated numbers of concurrent associations")
    options.add_argument("--batch-size", type=int, default=500, help="FHIR_BRIDGE_DIMSE_BATCH_SIZE")
    options.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    options.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    options.add_argument("--json", action="store_true", help="also print the figures as one line of JSON, last")
    arguments = options.parse_args(argv)
    if not shutil.which("storescu") or not shutil.which("echoscu"):
        raise SystemExit("this benchmark needs dcmtk's storescu and echoscu (Debian package dcmtk)")
    kinds = [k.strip() for k in arguments.databases.split(",") if k.strip()]
    counts = [int(n) for n in arguments.associations.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="dimse-bench-") as scratch_name:
        scratch = Path(scratch_name)
        print("making the test files ...", file=sys.stderr, flush=True)
        files = write_tree(
            scratch / "files", study_set(arguments.studies, arguments.series, arguments.instances, BASES)
        )
        folders = sorted({path.parent.parent for path in files})
        size = sum(path.stat().st_size for path in files) / 1e6
        rows = [header_parse(files)]
        rows[0].baseline_rate = rows[0].rate
        baseline = header_parse(files).rate
        rows.append(bridge_reader(files))
        rows[-1].baseline_rate = baseline
        load = os.getloadavg()
        for associations in counts:
            baseline = header_parse(files).rate
            rows.append(protocol_floor(folders, len(files), associations))
            rows[-1].baseline_rate = baseline
        for kind in kinds:
            for associations in counts:
                baseline = header_parse(files).rate
                with database(kind, scratch, arguments.postgres_url) as url:
                    row = c_store(url, scratch, folders, len(files), associations, arguments.batch_size)
                row.baseline_rate = baseline
                rows.append(row)
    print(
        f"\nDICOM C-STORE ingest: {len(files)} instances ({arguments.studies} studies x {arguments.series} series x "
        f"{arguments.instances}), {size:.0f} MB, {os.cpu_count()} cores, load average {load[0]:.1f} at the start"
    )
    print_rows(rows)
    best = max((row.ratio for row in rows if row.key.startswith("c_store")), default=0.0)
    verdict = "met" if best >= TARGET else "NOT met"
    print(f"\ntarget: C-STORE ingest >= {TARGET:.1f} x the header-parse rate: {verdict} (best {best:.2f})")
    if arguments.json:
        figures = [{**asdict(row), "rate": row.rate, "ratio": row.ratio} for row in rows]
        print(orjson.dumps({"instances": len(files), "megabytes": size, "rows": figures}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
