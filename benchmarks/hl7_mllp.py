"""HL7 v2 over MLLP: messages/s through ``fhir-bridge mllp``, against the same messages without the network.

N ORU^R01 radiology results (default 1,000; one patient, order and accession number each, one OBR
with two OBX; their studies are not stored, so each report waits for its study as in a RIS that
reports before the PACS forwards) are, in one run and each on a fresh database:

- **(a)** ingested in-process through ``ClinicalIngest.ingest`` as one body (what ``POST
  /ingest/clinical`` and ``fhir-bridge ingest-clinical`` run: per-record mode, transactions of 200);
- **(b)** ingested in-process one message per atomic ingest, with its keyed Provenance id and the
  duplicate check: the listener's work per message, without the network;
- **MLLP**: sent to ``fhir-bridge mllp`` (a subprocess) by python-hl7's ``MLLPClient`` over C
  connections at once, each waiting for its ACK before the next message (original mode). Every
  ACK must be AA; the store's DiagnosticReport count is checked.

``python -m benchmarks.hl7_mllp --help``; ``--messages 200 --databases sqlite`` for a quick look.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks.dicom_ingest import DEFAULT_POSTGRES_URL, KEY, _environment, _executable, _free_port, database

MAPPING = "radiology-report-hl7v2"


def messages(count: int) -> list[str]:
    """``count`` ORU^R01 messages of distinct patients, orders and accession numbers."""
    result = []
    for i in range(count):
        result.append(
            "\r".join(
                [
                    f"MSH|^~\\&|RIS|BENCH|FHIRBRIDGE|EUCAIM|20240305143000||ORU^R01^ORU_R01|B{i:08d}|P|2.5.1",
                    f"PID|1||BP-{i:07d}^^^BENCH^MR||Bench^Patient{i}||19600101|F",
                    f"OBR|1|PL-{i}^RIS|FO-{i}^RIS|CTCH^CT chest^L|||20240306091500+0100|||||||||||ACC-B{i:07d}"
                    "||||20240306110000+0100||CT|F",
                    "OBX|1|TX|18782-3^Study observation^LN||CT chest. Findings: 18 mm nodule, right upper lobe.||||||F",
                    "OBX|2|TX|19005-8^Impression^LN||Suspicious nodule; PET-CT advised.||||||F",
                ]
            )
        )
    return result


def _services(url: str) -> Any:
    from fhir_bridge import Settings
    from fhir_bridge.services import Services

    return Services.from_settings(Settings(database_url=url, pseudonym_key=KEY, auth="none"))


def in_process_body(url: str, texts: list[str]) -> float:
    """(a): the messages as one body through the clinical ingest; seconds."""
    from fhir_bridge.ingest.provenance import Source
    from fhir_bridge.mapping.clinical import ReaderOptions

    with _services(url) as services:
        mapping = services.mappings.load(MAPPING)
        reader = services.mappings.reader("hl7v2")
        body = "\n".join(texts).encode()
        started = time.perf_counter()
        summary = services.clinical_ingest.ingest(
            mapping, reader.read(io.BytesIO(body), ReaderOptions(encoding="utf-8")), Source("benchmark", "benchmark")
        )
        seconds = time.perf_counter() - started
    if summary.created != len(texts):
        raise SystemExit(f"(a) stored {summary.created} of {len(texts)} messages: {summary.as_json()}")
    return seconds


def in_process_messages(url: str, texts: list[str]) -> float:
    """(b): one atomic ingest per message with the listener's key and duplicate check; seconds."""
    from fhir_bridge.listeners.mllp import MllpConfig, MllpListener
    from fhir_bridge.listeners.peers import parse_peers

    with _services(url) as services:
        config = MllpConfig("127.0.0.1", 0, parse_peers(["BENCH"], "benchmark", "facility", 227), {"ORU^R01": MAPPING})
        listener = MllpListener(config, services.clinical_ingest, services.mappings, None)  # not started: no network
        started = time.perf_counter()
        codes = [listener.handle(message.encode(), "127.0.0.1")[0].code for message in texts]
        seconds = time.perf_counter() - started
        listener.stop()
    if codes.count("AA") != len(texts):
        raise SystemExit(f"(b) acknowledged {codes.count('AA')} of {len(texts)} messages with AA")
    return seconds


@contextmanager
def mllp_listener(url: str, scratch: Path) -> Iterator[int]:
    port = _free_port()
    environment = {
        **_environment(),
        "FHIR_BRIDGE_DATABASE_URL": url,
        "FHIR_BRIDGE_MLLP_ALLOWED_SENDERS": '["BENCH@127.0.0.1"]',
    }
    log = scratch / f"mllp-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [_executable(), "mllp", "--port", str(port)], cwd=scratch, env=environment, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 60
        while "MLLP listener on" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"fhir-bridge mllp did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=60)


def over_mllp(url: str, texts: list[str], connections: int, scratch: Path) -> float:
    """MLLP: ``connections`` clients at once, each with its share; seconds until the last ACK."""
    from hl7.client import MLLPClient

    codes: list[str] = []

    def send(share: list[str], port: int) -> None:
        with MLLPClient("127.0.0.1", port) as client:
            for message in share:
                ack = client.send_message(message).decode()
                codes.append(ack.split("MSA|", 1)[1][:2])

    with mllp_listener(url, scratch) as port:
        threads = [threading.Thread(target=send, args=(texts[i::connections], port)) for i in range(connections)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    stored = _reports(url)
    if codes.count("AA") != len(texts) or stored != len(texts):
        raise SystemExit(f"MLLP: {codes.count('AA')} AA of {len(texts)}, {stored} reports stored")
    return seconds


def _reports(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM resource WHERE res_type = 'DiagnosticReport' AND NOT deleted")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    texts = messages(arguments.messages)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        for kind in arguments.databases:
            with database(kind, scratch, arguments.postgres_url) as url:
                body = in_process_body(url, texts)
            with database(kind, scratch, arguments.postgres_url) as url:
                each = in_process_messages(url, texts)
            rows.append(_row(f"(a) {kind}: clinical ingest of one body, in-process", "a", kind, body, len(texts)))
            rows.append(_row(f"(b) {kind}: one atomic ingest per message, in-process", "b", kind, each, len(texts)))
            for connections in arguments.connections:
                with database(kind, scratch, arguments.postgres_url) as url:
                    seconds = over_mllp(url, texts, connections, scratch)
                rows.append(
                    _row(f"MLLP {kind}: {connections} connection(s)", f"mllp_{connections}", kind, seconds, len(texts))
                )
    for row in rows:
        base = {r["key"]: r["rate"] for r in rows if r["database"] == row["database"]}
        row["vs_a"] = row["rate"] / base["a"]
        row["vs_b"] = row["rate"] / base["b"]
    return {"messages": len(texts), "rows": rows}


def _row(label: str, key: str, kind: str, seconds: float, count: int) -> dict[str, Any]:
    return {"label": label, "key": key, "database": kind, "seconds": seconds, "rate": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4])
    parser.add_argument("--databases", type=lambda v: v.split(","), default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    arguments = parser.parse_args()
    results = run(arguments)
    print(f"{results['messages']} ORU^R01 messages")
    print(f"{'path':<58} {'msg/s':>8} {'vs (a)':>7} {'vs (b)':>7}")
    for row in results["rows"]:
        print(f"{row['label']:<58} {row['rate']:>8.1f} {row['vs_a']:>7.2f} {row['vs_b']:>7.2f}")
    if arguments.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
