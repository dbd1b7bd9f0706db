"""The HL7 v2 MLLP listener with a real client (python-hl7's ``mllp_send`` and ``MLLPClient``) and raw sockets.

Each test runs on SQLite and PostgreSQL: what the sender was told (the ACK) is checked against what
the store holds, and against the audit trail.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hl7
import httpx
import pytest
from fastapi.testclient import TestClient
from hl7.client import MLLPClient

from fhir_bridge import Settings, create_app
from fhir_bridge.listeners.mllp import MllpConfig, MllpListener
from fhir_bridge.listeners.peers import parse_peers
from fhir_bridge.services import Services
from fhir_bridge.settings import ConfigurationError
from tests.conftest import TEST_PSEUDONYM_KEY, free_port
from tests.dicom_samples import Patient, instance, multipart, uid
from tests.server_process import ServerProcess

EXAMPLES = Path(__file__).parent.parent / "mappings" / "examples"
MESSAGES = (EXAMPLES / "radiology-report.hl7").read_bytes().decode().strip("\n").split("\n")
VT, END = b"\x0b", b"\x1c\x0d"
BOUNDARY = "mllp-test"
SENDERS = ["HOSP@127.0.0.1"]
PATIENTS = [
    Patient("PID-00001", "Testperson^Study1", "19410111", "F", "HOSP"),
    Patient("PID-00002", "Testperson^Study2", "19420212", "M", "HOSP"),
]


@dataclass
class Bridge:
    client: TestClient
    services: Services
    listener: MllpListener

    @property
    def port(self) -> int:
        return self.listener.port

    def stow(self, number: int) -> None:
        parts = [
            instance(
                "MR_small.dcm",
                patient=PATIENTS[number - 1],
                study_uid=uid(number),
                series_uid=uid(number, 1),
                sop_uid=uid(number, 1, 1),
                AccessionNumber=f"ACC{number:06d}",
            )
        ]
        response = self.client.post(
            "/dicomweb/studies",
            content=multipart(parts, BOUNDARY),
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'},
        )
        assert response.status_code == 200, response.text

    def restart(self, senders: list[str], **options: object) -> None:
        """The listener again, with other settings."""
        self.listener.stop()
        self.listener = _listener(self.services, senders, **options)

    def search(self, resource_type: str, **parameters: str) -> list[dict]:
        bundle = self.client.get(f"/fhir/{resource_type}", params={"_count": "100", **parameters}).json()
        return [entry["resource"] for entry in bundle.get("entry", [])]

    def audit(self) -> list[dict]:
        return [e for e in self.search("AuditEvent") if e["entity"][-1]["description"].startswith("MLLP")]


def _listener(services: Services, senders: list[str], **config: object) -> MllpListener:
    listener = MllpListener(
        MllpConfig(
            "127.0.0.1",
            free_port(),
            parse_peers(senders, "test", "facility", 227),
            {"ORU^R01": "radiology-report-hl7v2"},
            **config,  # type: ignore[arg-type]
        ),
        services.clinical_ingest,
        services.mappings,
        services.audit_log.record,
    )
    listener.start()
    return listener


@pytest.fixture
def bridge(database_url: str) -> Iterator[Bridge]:
    settings = Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, pseudonym_key_file=None)
    app = create_app(settings)
    services = app.state.services
    bridge = Bridge(None, services, _listener(services, SENDERS))  # type: ignore[arg-type]
    try:
        with TestClient(app) as client:
            bridge.client = client
            yield bridge
    finally:
        bridge.listener.stop()
        services.close()


def _message(number: int = 1, control: str | None = None, **replace: str) -> str:
    text = MESSAGES[number - 1]
    if control is not None:
        text = text.replace(f"|MSG0000{number}|", f"|{control}|")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def _ack(raw: bytes | str) -> hl7.Message:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return hl7.parse(text.strip("\x0b\x1c\r\n"))


def _ack_code(raw: bytes | str) -> str:
    return str(_ack(raw).segment("MSA")[1])


def _errors(raw: bytes | str) -> list[tuple[str, str, str]]:
    """(location ERR-2, code ERR-3.1, message ERR-8) of each ERR segment."""
    message = _ack(raw)
    return [(str(s[2]), str(s[3][0][0]), str(s[8])) for s in message if str(s[0]) == "ERR"]


def _receive(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


# the real client ------------------------------------------------------------------------------
def test_mllp_send_delivers_a_file_of_results_and_each_message_is_acknowledged_and_stored(bridge, tmp_path):
    bridge.stow(1)
    bridge.stow(2)
    path = tmp_path / "results.hl7"
    path.write_bytes((EXAMPLES / "radiology-report.hl7").read_bytes())
    mllp_send = Path(sys.executable).with_name("mllp_send")
    run = subprocess.run(
        [str(mllp_send), "--loose", "--file", str(path), "--port", str(bridge.port), "127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    acks = [segment for segment in run.stdout.splitlines() if segment.startswith("MSA|")]  # printed as received
    assert [ack.split("|")[:3] for ack in acks] == [["MSA", "AA", "MSG00001"], ["MSA", "AA", "MSG00002"]]
    reports = bridge.search("DiagnosticReport")
    studies = bridge.search("ImagingStudy")
    assert len(reports) == 2
    assert sorted(r["imagingStudy"][0]["reference"] for r in reports) == sorted(
        f"ImagingStudy/{s['id']}" for s in studies
    )
    assert {r["subject"]["reference"] for r in reports} == {s["subject"]["reference"] for s in studies}
    provenance = bridge.search("Provenance", target=f"DiagnosticReport/{reports[0]['id']}")
    assert len(provenance) == 1
    assert "HL7 v2 MLLP sender" in provenance[0]["agent"][0]["who"]["display"]
    assert "facility HOSP at 127.0.0.1" in provenance[0]["agent"][0]["who"]["display"]
    events = bridge.audit()
    assert len(events) == 2 and {e["outcome"] for e in events} == {"0"}
    assert {e["agent"][0]["who"]["display"] for e in events} == {"HL7 v2 sending facility HOSP"}


def test_a_message_sent_again_is_answered_aa_without_writing_it_twice(bridge):
    bridge.stow(1)
    with MLLPClient("127.0.0.1", bridge.port) as client:
        first = client.send_message(_message(1))
        again = client.send_message(_message(1))
    assert _ack_code(first) == "AA" and _ack_code(again) == "AA"
    assert "stored before" in str(_ack(again).segment("MSA")[3])
    assert str(_ack(again).segment("MSA")[2]) == "MSG00001"
    assert len(bridge.search("DiagnosticReport")) == 1
    assert (
        len(bridge.search("Provenance", target=f"DiagnosticReport/{bridge.search('DiagnosticReport')[0]['id']}")) == 1
    )
    # the same control ID with other content is a new message, not a duplicate
    with MLLPClient("127.0.0.1", bridge.port) as client:
        changed = client.send_message(_message(1, **{"|F\rOBX|1|": "|C\rOBX|1|"}))
    assert _ack_code(changed) == "AA"
    assert bridge.search("DiagnosticReport")[0]["status"] == "corrected"


def test_a_message_in_error_is_answered_ae_naming_segment_and_field_and_nothing_is_stored(bridge):
    bridge.stow(1)
    no_status = _message(1, "BAD1", **{"||MR|F\r": "||MR|\r"})
    unknown_status = _message(1, "BAD2", **{"||MR|F\r": "||MR|Q\r"})
    with MLLPClient("127.0.0.1", bridge.port) as client:
        missing = client.send_message(no_status)
        unknown = client.send_message(unknown_status)
    assert _ack_code(missing) == "AE"
    assert [error[:2] for error in _errors(missing)] == [("OBR^1^25^1", "101")]
    assert "OBR^1^25" in str(_ack(missing).segment("ERR")[2]) and str(_ack(missing).segment("MSA")[3])
    assert _ack_code(unknown) == "AE"
    location, code, text = _errors(unknown)[0]
    assert (location, code) == ("OBR^1^25^1", "103") and "Q" in text
    assert bridge.search("DiagnosticReport") == []
    statuses = sorted(e["outcome"] for e in bridge.audit())
    assert statuses == ["4", "4"]


def test_a_result_before_its_images_is_accepted_and_linked_when_the_study_arrives(bridge):
    with MLLPClient("127.0.0.1", bridge.port) as client:
        answer = client.send_message(_message(2))  # names its study by accession number (OBR-18) only
    assert _ack_code(answer) == "AA"
    (waiting,) = bridge.search("DiagnosticReport")
    assert "reference" not in waiting["imagingStudy"][0]
    bridge.stow(2)
    (study,) = bridge.search("ImagingStudy")
    (linked,) = bridge.search("DiagnosticReport")
    assert linked["imagingStudy"] == [{"reference": f"ImagingStudy/{study['id']}"}]


def test_a_result_naming_another_patients_study_is_answered_ae_at_obr_18(bridge):
    bridge.stow(1)  # ACC000001 is patient 1's
    other = _message(2, "WRONG1", **{"|ACC000002|": "|ACC000001|"})
    with MLLPClient("127.0.0.1", bridge.port) as client:
        answer = client.send_message(other)
    assert _ack_code(answer) == "AE"
    (location, code, reason) = _errors(answer)[0]
    assert (location, code) == ("OBR^1^18^1", "204") and "another patient" in reason
    assert bridge.search("DiagnosticReport") == []


def test_a_message_in_the_character_set_its_msh_18_names_is_read_in_it(bridge):
    bridge.stow(1)
    text = _message(1, "LATIN1", **{"|P|2.5.1\r": "|P|2.5.1||||||8859/1\r", "biopsy advised": "Läsion, Biopsie"})
    with MLLPClient("127.0.0.1", bridge.port, encoding="latin-1") as client:
        answer = client.send_message(text)
    assert _ack_code(answer) == "AA"
    (report,) = bridge.search("DiagnosticReport")
    assert report["conclusion"].endswith("Läsion, Biopsie.")


def test_an_unsupported_message_type_is_rejected_ar_at_msh_9(bridge):
    adt = "MSH|^~\\&|ADT|HOSP|FHIRBRIDGE|EUCAIM|20240305143000||ADT^A01^ADT_A01|ADT1|P|2.5.1\rPID|1||X^^^HOSP^MR"
    with MLLPClient("127.0.0.1", bridge.port) as client:
        answer = client.send_message(adt)
    assert _ack_code(answer) == "AR"
    assert str(_ack(answer).segment("MSH")[9]) == "ACK^A01^ACK"
    assert _errors(answer)[0][:2] == ("MSH^1^9^1", "200")


# senders ---------------------------------------------------------------------------------------
def test_a_facility_not_on_the_allow_list_is_rejected_and_audited(bridge):
    with MLLPClient("127.0.0.1", bridge.port) as client:
        answer = client.send_message(_message(1).replace("|RIS|HOSP|", "|RIS|OTHER|"))
    assert _ack_code(answer) == "AR"
    location, _code, text = _errors(answer)[0]
    assert location == "MSH^1^4^1" and "OTHER" in text
    assert bridge.search("DiagnosticReport") == []
    (event,) = bridge.audit()
    assert event["outcome"] == "4" and "OTHER" in event["outcomeDesc"]


def test_a_connection_from_an_address_not_on_the_allow_list_is_closed_unanswered(bridge):
    bridge.restart(["HOSP@192.0.2.7"])
    with _connect(bridge.port) as sock:
        try:
            sock.sendall(VT + _message(1).encode() + END)
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass
    (event,) = bridge.audit()
    assert event["type"]["code"] == "110113" and "127.0.0.1" in event["outcomeDesc"]


def test_the_allow_list_is_required_to_name_valid_entries():
    with pytest.raises(ConfigurationError, match="FHIR_BRIDGE_MLLP_ALLOWED_SENDERS"):
        MllpConfig.from_settings(
            Settings(mllp_port=free_port(), mllp_allowed_senders=["@10.0.0.1"], pseudonym_key=TEST_PSEUDONYM_KEY)
        )


def test_a_mapping_that_does_not_exist_stops_the_start_naming_the_message_type(bridge):
    config = MllpConfig("127.0.0.1", free_port(), [], {"ADT^A01": "no-such-mapping"})
    with pytest.raises(ConfigurationError, match="FHIR_BRIDGE_MLLP_MAPPINGS: the mapping of 'ADT\\^A01'"):
        MllpListener(config, bridge.services.clinical_ingest, bridge.services.mappings)


# framing ---------------------------------------------------------------------------------------
def test_a_slow_sender_trickling_bytes_is_answered_once_the_frame_ends(bridge):
    bridge.stow(1)
    frame = VT + _message(1).encode() + END
    with _connect(bridge.port) as sock:
        for start in range(0, len(frame), 7):
            sock.sendall(frame[start : start + 7])
            time.sleep(0.002)
        answer = _receive(sock)
    assert _ack_code(answer) == "AA"
    assert len(bridge.search("DiagnosticReport")) == 1


def test_a_partial_frame_cut_off_by_the_sender_stores_nothing_and_the_next_connection_works(bridge):
    bridge.stow(1)
    frame = VT + _message(1).encode() + END
    with _connect(bridge.port) as sock:
        sock.sendall(frame[: len(frame) // 2])
    with _connect(bridge.port) as sock:
        sock.sendall(frame[: len(frame) // 2])  # cut off by the start of the next frame (a sender's restart)
        sock.sendall(frame)
        answer = _receive(sock)
    assert _ack_code(answer) == "AA"
    assert len(bridge.search("DiagnosticReport")) == 1
    assert len(bridge.audit()) == 1


def test_bytes_outside_frames_and_a_frame_without_msh_are_handled_and_the_connection_goes_on(bridge):
    bridge.stow(1)
    with _connect(bridge.port) as sock:
        sock.sendall(b"\r\nnoise between frames\r\n" + VT + b"PID|1||X\r" + END)
        not_hl7 = _receive(sock)
        sock.sendall(b"junk" + VT + _message(1).encode() + END)
        good = _receive(sock)
    assert _ack_code(not_hl7) == "AR"
    assert str(_ack(not_hl7).segment("MSA")[2]) == ""
    assert _errors(not_hl7)[0][:2] == ("MSH^1", "100")
    assert _ack_code(good) == "AA"
    assert len(bridge.search("DiagnosticReport")) == 1


def test_an_oversize_frame_is_rejected_naming_the_limit_and_the_next_message_is_taken(bridge):
    bridge.restart(SENDERS, max_message_bytes=2048)
    bridge.stow(1)
    big = _message(1, "BIG1", **{"OBX|1|TX|": "NTE|1||" + "x" * 4000 + "\rOBX|1|TX|"})
    with _connect(bridge.port) as sock:
        sock.sendall(VT + big.encode() + END)
        oversize = _receive(sock)
        sock.sendall(VT + _message(1).encode() + END)
        good = _receive(sock)
    assert _ack_code(oversize) == "AR"
    assert str(_ack(oversize).segment("MSA")[2]) == "BIG1"
    assert "2048 bytes" in _errors(oversize)[0][2]
    assert _ack_code(good) == "AA"
    assert len(bridge.search("DiagnosticReport")) == 1


def test_a_sender_silent_mid_frame_is_disconnected(bridge):
    bridge.restart(SENDERS, timeout_s=0.5)
    with _connect(bridge.port) as sock:
        sock.sendall(VT + b"MSH|^~\\&|RIS|HOSP|")
        assert sock.recv(4096) == b""  # closed by the listener, nothing answered
    assert bridge.search("DiagnosticReport") == []


def test_serve_runs_the_mllp_listener_beside_the_api_when_an_mllp_port_is_set(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("FHIR_BRIDGE_MLLP_PORT", str(port))
    monkeypatch.setenv("FHIR_BRIDGE_MLLP_ALLOWED_SENDERS", json.dumps(SENDERS))
    server = ServerProcess(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "server.log").start()
    try:
        with MLLPClient("127.0.0.1", port) as client:
            answer = client.send_message(_message(2))
        assert _ack_code(answer) == "AA"
        bundle = httpx.get(f"{server.fhir}/DiagnosticReport", timeout=10).json()
        assert len(bundle["entry"]) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_mllp_command_without_a_port_is_a_one_line_refusal(database_url: str) -> None:
    finished = subprocess.run(
        [str(Path(sys.executable).parent / "fhir-bridge"), "mllp", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    refusal = finished.stderr.strip()
    assert "\n" not in refusal and "FHIR_BRIDGE_MLLP_PORT" in refusal, refusal
