"""16 concurrent clients on the same studies for a few seconds: no unexpected error, no lost update.

The real service runs as a process of its own, on SQLite and on PostgreSQL. For ``DURATION_S``
seconds, 16 threads with an httpx client each work on three studies of two patients:

- 6 push new DICOM instances by STOW-RS, two threads per study;
- 4 increment one of two counters (a Basic resource with an integer extension) by
  read-modify-write with ``If-Match``, retrying on 412/409;
- 2 do the same on a counter kept in the ImagingStudy itself, racing the STOW-RS merges;
- 4 search: ImagingStudy by patient, by modality, with ``_include``, the counters, reads.

The only statuses allowed are the successes and the documented conflicts (412, 409 of a
conditional update). At the end: every counter equals the number of updates the server accepted,
and every resource has exactly one version per accepted write; every instance stored is in its
study and nothing else is; searches saw only internally consistent studies, never one with fewer
instances than before; and ``assert_store_consistent`` passes.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dicom_samples import Patient, instance, multipart, uid
from tests.server_process import ServerProcess
from tests.store_consistency import assert_store_consistent, imaging_study_problems

pytestmark = pytest.mark.slow  # real server processes under concurrent load
DURATION_S = 3.0
TIMEOUT_S = 60.0
BOUNDARY = "concurrency-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
COUNTER = "urn:fhir-bridge:test:counter"
PATIENTS = {
    "A": Patient("CONC-A", "Concurrent^Alice", "19500101", "F"),
    "B": Patient("CONC-B", "Concurrent^Bob", "19600101", "M"),
}
# study number -> (patient, base file: its modality)
STUDIES = {1: ("A", "MR_small.dcm"), 2: ("A", "MR_small.dcm"), 3: ("B", "CT_small.dcm")}
PUSHERS, COUNTER_UPDATERS, STUDY_UPDATERS, SEARCHERS = 6, 4, 2, 4
_generating = threading.Lock()  # dicom_samples.instance() rewrites a cached dataset: one at a time


def _instance(study: int, series: int, number: int) -> bytes:
    patient, base = STUDIES[study]
    with _generating:
        return instance(
            base,
            patient=PATIENTS[patient],
            study_uid=uid(700, study),
            series_uid=uid(700, study, series),
            sop_uid=uid(700, study, series, number),
            series_number=series,
            instance_number=number,
        )


@dataclass
class Record:
    """What one client thread did and saw."""

    unexpected: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    stored: dict[int, set[str]] = field(default_factory=dict)  # study -> SOP Instance UIDs stored
    pushes: Counter[int] = field(default_factory=Counter)  # study -> accepted STOW-RS requests
    updates: Counter[str] = field(default_factory=Counter)  # resource -> accepted updates
    searches: int = 0


@dataclass
class World:
    server: ServerProcess
    studies: dict[int, str]  # study number -> ImagingStudy id
    patients: dict[str, str]  # "A"/"B" -> Patient reference
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(database_url, tmp_path / "server.log").start()
    yield server
    server.stop()


def _expect(record: Record, what: str, response: httpx.Response, allowed: tuple[int, ...]) -> bool:
    record.statuses[f"{what} {response.status_code}"] += 1
    if response.status_code not in allowed:
        record.unexpected.append(f"{what}: {response.status_code} {response.text[:300]}")
        return False
    return True


def _pusher(world: World, record: Record, study: int, series: int) -> None:
    client = httpx.Client(timeout=TIMEOUT_S)
    number = 0
    while not world.stop.is_set():
        size = random.randint(1, 4)
        numbers = range(number + 1, number + size + 1)
        number += size
        sent = {uid(700, study, series, n) for n in numbers}
        body = multipart([_instance(study, series, n) for n in numbers], BOUNDARY)
        response = client.post(f"{world.server.dicomweb}/studies", content=body, headers={"Content-Type": STOW_TYPE})
        if _expect(record, "STOW-RS", response, (200,)):
            stored = {item["00081155"]["Value"][0] for item in response.json()["00081199"]["Value"]}
            if stored != sent:
                record.unexpected.append(f"STOW-RS stored {sorted(stored)}, not {sorted(sent)}")
            record.stored.setdefault(study, set()).update(stored)
            record.pushes[study] += 1
    client.close()


def _count(resource: dict[str, Any]) -> int:
    return next((e["valueInteger"] for e in resource.get("extension", []) if e["url"] == COUNTER), 0)


def _set_count(resource: dict[str, Any], value: int) -> None:
    others = [e for e in resource.get("extension", []) if e["url"] != COUNTER]
    resource["extension"] = [*others, {"url": COUNTER, "valueInteger": value}]


def _updater(world: World, record: Record, targets: list[str]) -> None:
    """Read-modify-write with If-Match; a 412 or 409 means someone else wrote first: read again."""
    client = httpx.Client(timeout=TIMEOUT_S)
    while not world.stop.is_set():
        target = random.choice(targets)
        url = f"{world.server.fhir}/{target}"
        read = client.get(url)
        if not _expect(record, "read", read, (200,)):
            continue
        resource = read.json()
        _set_count(resource, _count(resource) + 1)
        response = client.put(url, json=resource, headers={"If-Match": read.headers["ETag"]})
        if _expect(record, f"update {target.split('/')[0]}", response, (200, 409, 412)) and response.status_code == 200:
            if response.json()["meta"]["versionId"] != str(int(read.headers["ETag"][3:-1]) + 1):
                record.unexpected.append(f"{target}: an accepted update did not make the next version")
            record.updates[target] += 1
    client.close()


def _searcher(world: World, record: Record) -> None:
    client = httpx.Client(timeout=TIMEOUT_S)
    fhir = world.server.fhir
    ids = world.studies
    by_patient_a = {ids[1], ids[2]}
    queries: list[tuple[str, dict[str, str], Callable[[list[dict]], bool]]] = [
        ("ImagingStudy", {"subject": world.patients["A"]}, lambda found: _ids(found) == by_patient_a),
        ("ImagingStudy", {"patient": world.patients["B"]}, lambda found: _ids(found) == {ids[3]}),
        ("ImagingStudy", {"modality": "MR"}, lambda found: _ids(found) == by_patient_a),
        ("ImagingStudy", {"modality": "CT"}, lambda found: _ids(found) == {ids[3]}),
        (
            "ImagingStudy",
            {"_include": "ImagingStudy:subject", "_count": "10"},
            lambda found: (
                _ids(found, "match") == set(ids.values())
                and {f"Patient/{e['resource']['id']}" for e in found if e["search"]["mode"] == "include"}
                == set(world.patients.values())
            ),
        ),
        ("Basic", {"_id": "counter-0,counter-1"}, lambda found: _ids(found) == {"counter-0", "counter-1"}),
    ]
    seen: dict[str, int] = {}  # ImagingStudy id -> most instances seen
    turn = random.randrange(len(queries))
    while not world.stop.is_set():
        resource_type, parameters, check = queries[turn % len(queries)]
        turn += 1
        response = client.get(f"{fhir}/{resource_type}", params=parameters)
        if not _expect(record, f"search {resource_type}", response, (200,)):
            continue
        record.searches += 1
        found = response.json().get("entry", [])
        if not check(found):
            record.unexpected.append(f"{resource_type}?{parameters} found {sorted(_ids(found))}")
        for entry in found:
            resource = entry["resource"]
            if resource["resourceType"] != "ImagingStudy":
                continue
            for problem in imaging_study_problems(resource):
                record.unexpected.append(f"search found ImagingStudy/{resource['id']}: {problem}")
            if resource["numberOfInstances"] < seen.get(resource["id"], 0):
                record.unexpected.append(f"ImagingStudy/{resource['id']} lost instances between two searches")
            seen[resource["id"]] = resource["numberOfInstances"]
    client.close()


def _ids(entries: list[dict], mode: str | None = None) -> set[str]:
    return {e["resource"]["id"] for e in entries if mode is None or e["search"]["mode"] == mode}


def _guarded(work: Callable[..., None], world: World, record: Record, *arguments: Any) -> Callable[[], None]:
    def run() -> None:
        try:
            work(world, record, *arguments)
        except Exception:
            record.unexpected.append(traceback.format_exc(limit=3))

    return run


def _setup(server: ServerProcess) -> World:
    """The three studies (one instance each, series 99) and the two counters."""
    parts = [_instance(study, 99, 1) for study in STUDIES]
    response = httpx.post(
        f"{server.dicomweb}/studies", content=multipart(parts, BOUNDARY), headers={"Content-Type": STOW_TYPE}
    )
    assert response.status_code == 200, response.text
    studies, patients = {}, {}
    for study, (patient, _) in STUDIES.items():
        bundle = httpx.get(
            f"{server.fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{uid(700, study)}"}
        ).json()
        (entry,) = bundle["entry"]
        studies[study] = entry["resource"]["id"]
        patients[patient] = entry["resource"]["subject"]["reference"]
    for n in range(2):
        counter = {"resourceType": "Basic", "id": f"counter-{n}", "code": {"text": "a shared counter"}}
        _set_count(counter, 0)
        assert httpx.put(f"{server.fhir}/Basic/counter-{n}", json=counter).status_code == 201
    return World(server, studies, patients)


def test_concurrent_pushes_updates_and_searches(server: ServerProcess, database_url: str) -> None:
    world = _setup(server)
    records = [Record() for _ in range(PUSHERS + COUNTER_UPDATERS + STUDY_UPDATERS + SEARCHERS)]
    work = iter(records)
    threads = []
    for p in range(PUSHERS):
        threads.append(_guarded(_pusher, world, next(work), 1 + p % len(STUDIES), 1 + p))
    counters = ["Basic/counter-0", "Basic/counter-1"]
    studies = [f"ImagingStudy/{world.studies[s]}" for s in STUDIES]
    for _ in range(COUNTER_UPDATERS):
        threads.append(_guarded(_updater, world, next(work), counters))
    for u in range(STUDY_UPDATERS):
        threads.append(_guarded(_updater, world, next(work), studies[u::STUDY_UPDATERS]))
    for _ in range(SEARCHERS):
        threads.append(_guarded(_searcher, world, next(work)))
    running = [threading.Thread(target=run, daemon=True) for run in threads]
    for thread in running:
        thread.start()
    time.sleep(DURATION_S)
    world.stop.set()
    for thread in running:
        thread.join(TIMEOUT_S)
    assert not any(thread.is_alive() for thread in running), "a client is stuck"

    unexpected = [problem for record in records for problem in record.unexpected]
    statuses = sum((record.statuses for record in records), Counter())
    assert not unexpected, f"{len(unexpected)} unexpected outcomes ({dict(statuses)}):\n" + "\n".join(unexpected[:20])
    updates = sum((record.updates for record in records), Counter())
    pushes = sum((record.pushes for record in records), Counter())
    print(f"{dict(statuses)}, {sum(r.searches for r in records)} searches")  # shown with -s
    assert all(pushes[s] for s in STUDIES) and all(updates[c] for c in counters), (pushes, updates)

    # no lost update: each counter holds the number of accepted updates, one version each
    for target in counters + studies:
        current = httpx.get(f"{server.fhir}/{target}").json()
        assert _count(current) == updates[target], target
        if target in counters:
            assert current["meta"]["versionId"] == str(1 + updates[target]), target
    # every instance stored is in its study, and nothing else; one version per accepted write
    for study, target in zip(STUDIES, studies, strict=True):
        current = httpx.get(f"{server.fhir}/{target}").json()
        stored = set().union(*(record.stored.get(study, set()) for record in records))
        found = {i["uid"] for s in current["series"] for i in s["instance"]}
        assert found == stored | {uid(700, study, 99, 1)}, f"study {study}: {len(found)} found, {len(stored)} stored"
        assert current["meta"]["versionId"] == str(1 + pushes[study] + updates[target]), target
    counts = assert_store_consistent(database_url)
    assert counts["Provenance"] == 1 + sum(pushes.values())  # one per STOW-RS request, the set-up's included
    assert counts["ImagingStudy"] == len(STUDIES) and counts["Patient"] == len(PATIENTS)
