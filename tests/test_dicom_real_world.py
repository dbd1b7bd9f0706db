"""Real-world DICOM the reader must not refuse: VR UN, non-conformant UIDs, DICOMDIRs and debris in folders."""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from fhir_bridge import Settings, create_app
from fhir_bridge.dicom.reader import DICOMDIR, NotAnInstance, read_path, read_stream
from fhir_bridge.ingest.files import ingest_files
from fhir_bridge.privacy.pseudonymiser import Pseudonymiser
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.dicom_samples import Patient, instance, multipart, uid, write_tree

CONTENT_TYPE = 'multipart/related; type="application/dicom"; boundary="fhir-bridge-test-boundary"'
HEX_STUDY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # a hashing anonymiser's "UID"
ZERO_SERIES = "1.2.826.0.1.3680043.10.1234.07.01"  # components with leading zeros
LONG_SOP = "1.2.826.0.1.3680043.10.1234." + "1234567890." * 4 + "1"  # 80 characters


def as_un(data: bytes, *tags: int) -> bytes:
    """``data`` (explicit VR little endian) with the elements ``tags`` re-encoded as VR UN, as GDCM writes them."""
    for tag in tags:
        key = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        at = data.find(key, 132 + 200)  # past the file meta
        assert at > 0 and data[at + 4 : at + 6] not in (b"UN", b"SQ"), f"{tag:08X} not found as a short element"
        length = struct.unpack("<H", data[at + 6 : at + 8])[0]
        value = data[at + 8 : at + 8 + length]
        data = data[:at] + key + b"UN\x00\x00" + struct.pack("<L", length) + value + data[at + 8 + length :]
    return data


def _instance(study: str = uid(70), series: str = uid(70, 1), sop: str = uid(70, 1, 1), **attributes) -> bytes:
    patient = Patient("RW-1", "Real^World", "19610203")
    return instance("CT_small.dcm", patient=patient, study_uid=study, series_uid=series, sop_uid=sop, **attributes)


def test_elements_encoded_as_un_are_read_with_their_dictionary_vr():
    original = _instance(AccessionNumber="ACC-UN-1")
    data = as_un(original, 0x00080050, 0x00080060, 0x00100020, 0x0020000D, 0x0020000E, 0x00200011)
    assert data.count(b"UN\x00\x00") >= 6
    read = read_stream(io.BytesIO(data))
    expected = read_stream(io.BytesIO(original))
    assert read.attributes == expected.attributes
    assert read.study_uid == uid(70)
    assert read.attributes["Modality"] == "CT"
    assert read.attributes["SeriesNumber"] == "1"
    assert read.defects == ()


def test_a_code_sequence_encoded_as_un_is_read_as_the_sequence_it_is():
    """A UN sequence holds its items in implicit VR little endian (PS3.5 6.2.2), as GDCM writes it."""
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "RPID16", "RADLEX", "CT CHEST"
    holder = Dataset()
    holder.ProcedureCodeSequence = [code]
    implicit = DicomBytesIO()
    implicit.is_implicit_VR, implicit.is_little_endian = True, True
    write_dataset(implicit, holder)
    encoded = implicit.getvalue()  # tag, length, items
    element = encoded[:4] + b"UN\x00\x00" + struct.pack("<L", len(encoded) - 8) + encoded[8:]
    data = _instance()
    at = data.find(struct.pack("<HH", 0x0008, 0x1090))  # (0008,1032) goes before Manufacturer's Model Name
    assert at > 0
    read = read_stream(io.BytesIO(data[:at] + element + data[at:]))
    assert read.attributes["ProcedureCodeSequence"] == [
        {"CodeValue": "RPID16", "CodingSchemeDesignator": "RADLEX", "CodeMeaning": "CT CHEST"}
    ]
    assert read.defects == ()


def test_a_file_with_un_uids_is_ingested_from_a_folder(database_url, tmp_path):
    folder = tmp_path / "tcia"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(as_un(_instance(), 0x0020000D, 0x0020000E, 0x00080018))
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    try:
        summary = ingest_files(app.state.services.dicom_ingest, [folder])
        assert (summary.instances, summary.failed) == (1, [])
        with TestClient(app) as client:
            found = client.get("/fhir/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{uid(70)}"}).json()
        assert len(found.get("entry", [])) == 1
    finally:
        app.state.services.close()


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("StudyInstanceUID", HEX_STUDY), ("SeriesInstanceUID", ZERO_SERIES), ("SOPInstanceUID", LONG_SOP)],
    ids=["hex-digest", "leading-zeros", "too-long"],
)
def test_a_nonconformant_uid_is_read_and_flagged_not_refused(keyword, value):
    uids = {"study": uid(70), "series": uid(70, 1), "sop": uid(70, 1, 1)}
    uids[{"StudyInstanceUID": "study", "SeriesInstanceUID": "series", "SOPInstanceUID": "sop"}[keyword]] = value
    data = _instance(**uids)
    read = read_stream(io.BytesIO(data))
    assert read.nonconformant_uids == (keyword,)
    assert read.attributes[keyword] == value


def _stow(client: TestClient, parts: list[bytes]) -> tuple[int, dict]:
    response = client.post("/dicomweb/studies", content=multipart(parts), headers={"Content-Type": CONTENT_TYPE})
    return response.status_code, response.json()


def test_nonconformant_uids_are_stored_with_a_warning_as_derived_2_25_uids(database_url):
    parts = [_instance(HEX_STUDY, ZERO_SERIES, LONG_SOP), _instance(HEX_STUDY, ZERO_SERIES, uid(70, 1, 2))]
    derive = Pseudonymiser(TEST_PSEUDONYM_KEY.encode()).uid
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    try:
        with TestClient(app) as client:
            status, body = _stow(client, parts)
            assert status == 202, body  # stored, with warnings
            stored = body["00081199"]["Value"]
            assert [item["00081196"]["Value"] for item in stored] == [[0xB000], [0xB000]]
            assert stored[0]["00081155"]["Value"] == [LONG_SOP]  # the sender's own UID in the answer
            bundle = client.get("/fhir/ImagingStudy", params={"_revinclude": "Provenance:target"}).json()
            study = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ImagingStudy")
            assert study["identifier"][0]["value"] == f"urn:oid:{derive(HEX_STUDY)}"
            assert study["series"][0]["uid"] == derive(ZERO_SERIES)
            assert sorted(i["uid"] for i in study["series"][0]["instance"]) == sorted([derive(LONG_SOP), uid(70, 1, 2)])
            provenance = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
            derivations = {
                e["what"]["identifier"]["value"]: e["what"]["display"]
                for e in provenance["entity"]
                if e["role"] == "derivation"
            }
            assert set(derivations) == {HEX_STUDY, ZERO_SERIES, LONG_SOP}
            assert derivations[HEX_STUDY].endswith(f"stored as {derive(HEX_STUDY)}")
            # the same study again (another push, another day): the same resources, no new version
            status, _ = _stow(client, parts)
            assert status == 202
            again = client.get(f"/fhir/ImagingStudy/{study['id']}").json()
            assert again["meta"]["versionId"] == study["meta"]["versionId"]
    finally:
        app.state.services.close()


def test_a_nonconformant_uid_without_a_site_secret_is_refused_with_a_reason(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'plain.db'}",
        pseudonymise=False,
        pseudonym_key=None,
        pseudonym_key_file=None,
    )
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            status, body = _stow(client, [_instance(HEX_STUDY)])
        assert status == 409
        failed = body["00081198"]["Value"][0]
        assert failed["00081197"]["Value"] == [0xA900]
        assert "no site secret" in failed["00000902"]["Value"][0]
    finally:
        app.state.services.close()


def test_dicomdirs_and_other_files_that_are_no_instances_are_skipped_not_failed(database_url, tmp_path):
    root = tmp_path / "media"
    write_tree(root, iter([("PAT1/IMG1", _instance()), ("PAT1/IMG2", _instance(sop=uid(70, 1, 2)))]))
    dicomdir = get_testdata_file("DICOMDIR", download=False)
    assert dicomdir is not None
    shutil.copy(dicomdir, root / "index.dir")  # a DICOMDIR found by what it is, not by its name
    shutil.copy(dicomdir, root / "DICOMDIR")
    (root / "README.TXT").write_text("Burned by a CD writer; see the viewer on this disc.")
    (root / "empty.dcm").write_bytes(b"")
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    try:
        summary = ingest_files(app.state.services.dicom_ingest, [root])
    finally:
        app.state.services.close()
    assert summary.instances == 2
    assert sorted((Path(path).name, reason) for path, reason in summary.skipped) == [
        ("DICOMDIR", DICOMDIR),
        ("README.TXT", "not a DICOM file"),
        ("index.dir", DICOMDIR),
    ]
    assert [(Path(path).name, reason) for path, reason in summary.failed] == [("empty.dcm", "empty file")]


def test_a_dicomdir_is_not_an_instance_to_the_reader():
    path = get_testdata_file("DICOMDIR", download=False)
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    with pytest.raises(NotAnInstance, match="DICOMDIR"):
        read_path(path)
