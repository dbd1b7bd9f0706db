"""Reading DICOM headers: transfer syntaxes, character sets, missing preambles, defects, bad input, big files."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
from pathlib import Path

import pydicom
import pytest

from fhir_bridge.dicom.reader import (
    CANNOT_UNDERSTAND,
    DOES_NOT_MATCH_SOP_CLASS,
    DicomReadError,
    read_path,
    read_stream,
)
from tests.dicom_samples import sample_path


def _bytes(name: str) -> bytes:
    return Path(sample_path(name)).read_bytes()


def _rewritten(name: str, **attributes: object) -> bytes:
    dataset = pydicom.dcmread(sample_path(name))
    for keyword, value in attributes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
@pytest.mark.parametrize(
    ("name", "transfer_syntax"),
    [
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),  # implicit VR little endian
        ("MR_small.dcm", "1.2.840.10008.1.2.1"),  # explicit VR little endian
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),  # explicit VR big endian
        ("image_dfl.dcm", "1.2.840.10008.1.2.1.99"),  # deflated
        ("JPEG-lossy.dcm", "1.2.840.10008.1.2.4.51"),  # encapsulated JPEG
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"),  # encapsulated JPEG 2000
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # encapsulated RLE
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # encapsulated JPEG-LS
        ("SC_rgb_jpeg.dcm", "1.2.840.10008.1.2.4.50"),  # pixel data written in implicit VR (a real-world defect)
    ],
)
def test_headers_of_every_transfer_syntax(name, transfer_syntax):
    expected = pydicom.dcmread(sample_path(name), stop_before_pixels=True)
    instance = read_path(sample_path(name))
    assert instance.transfer_syntax == transfer_syntax
    assert instance.study_uid == expected.StudyInstanceUID
    assert instance.series_uid == expected.SeriesInstanceUID
    assert instance.sop_instance_uid == expected.SOPInstanceUID
    assert instance.sop_class_uid == expected.SOPClassUID
    assert instance.attributes["Modality"] == expected.Modality


def test_a_file_without_preamble_but_with_file_meta():
    data = _bytes("MR_small.dcm")
    assert data[128:132] == b"DICM"
    instance = read_stream(io.BytesIO(data[132:]))
    assert instance.attributes["PatientID"] == "4MR1"
    assert instance.transfer_syntax == "1.2.840.10008.1.2.1"


@pytest.mark.parametrize("name", ["ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"])
def test_a_file_without_preamble_and_without_file_meta(name):
    instance = read_path(sample_path(name))
    assert instance.attributes["Modality"] == "RTPLAN"
    assert instance.transfer_syntax is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("chrFren.dcm", "Jérôme, thorax élargi"),  # ISO_IR 100
        ("chrGerm.dcm", "Rüdiger, Lunge"),  # ISO_IR 100
        ("chrX1.dcm", "王小東 胸部 CT"),  # ISO_IR 192 (UTF-8)
        ("chrX2.dcm", "王小东 胸部"),  # GB18030
        ("chrJapMulti.dcm", "山田 胸部"),  # ISO 2022 IR 87 (Japanese, multi-byte)
        ("chrKoreanMulti.dcm", "홍길동 흉부"),  # ISO 2022 IR 149 (Korean, multi-byte)
        ("chrRuss.dcm", "\u041b\u044e\u043a\u0441\u0435\u043c\u0431\u0443\u0440\u0433"),  # ISO_IR 144 (Cyrillic)
    ],
)
def test_character_sets_are_decoded(name, text):
    original = read_path(sample_path(name))
    assert original.attributes["PatientID"]
    data = _rewritten(name, StudyDescription=text)
    assert text.encode("utf-8") not in data or name == "chrX1.dcm"  # stored in the file's own encoding
    assert read_stream(io.BytesIO(data)).attributes["StudyDescription"] == text


def test_a_defective_tag_does_not_reject_the_instance():
    data = _bytes("MR_small.dcm")
    modality = data.find(b"\x08\x00\x60\x00CS")
    broken = data[: modality + 4] + b"ZZ" + data[modality + 6 :]  # an unknown VR: the value cannot be decoded
    series_number = broken.find(b"\x20\x00\x11\x00IS")
    broken = broken[: series_number + 8] + b"x!" + broken[series_number + 10 :]  # a non-numeric IS
    instance = read_stream(io.BytesIO(broken))
    assert instance.defects == ("Modality",)
    assert "Modality" not in instance.attributes
    assert instance.attributes["SeriesNumber"] == "x!"  # kept as text; the mapping leaves it out
    assert instance.sop_instance_uid == pydicom.dcmread(sample_path("MR_small.dcm")).SOPInstanceUID


def test_pydicoms_bad_vr_file_is_read():
    assert read_path(sample_path("badVR.dcm")).attributes["Modality"] == "RTDOSE"


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (b"", CANNOT_UNDERSTAND, "empty file"),
        (b"%PDF-1.7 this is not DICOM" * 20, CANNOT_UNDERSTAND, "not a DICOM file"),
        (_bytes("MR_small.dcm")[:700], CANNOT_UNDERSTAND, "truncated"),
        (_bytes("MR_truncated.dcm"), CANNOT_UNDERSTAND, "truncated: the pixel data"),
        (_bytes("examples_jpeg2k.dcm")[:-1000], CANNOT_UNDERSTAND, "truncated: the pixel data"),
        (_rewritten("MR_small.dcm", SOPInstanceUID=None), DOES_NOT_MATCH_SOP_CLASS, "missing SOPInstanceUID"),
        (_rewritten("MR_small.dcm", StudyInstanceUID=None), DOES_NOT_MATCH_SOP_CLASS, "missing StudyInstanceUID"),
        (_rewritten("CT_small.dcm", SOPClassUID="1.2.abc"), DOES_NOT_MATCH_SOP_CLASS, "not a valid UID"),
    ],
    ids=["empty", "not-dicom", "cut-header", "cut-pixels", "cut-fragments", "no-sop", "no-study", "bad-uid"],
)
def test_bad_input_is_refused_with_a_reason(data, code, reason):
    with pytest.raises(DicomReadError) as refused:
        read_stream(io.BytesIO(data))
    assert refused.value.code == code
    assert reason in refused.value.reason


def test_a_refusal_names_the_instance_when_it_can():
    data = _rewritten("MR_small.dcm", StudyInstanceUID=None)
    with pytest.raises(DicomReadError) as refused:
        read_stream(io.BytesIO(data))
    assert refused.value.sop_instance_uid == pydicom.dcmread(sample_path("MR_small.dcm")).SOPInstanceUID


def _huge_multiframe(path: Path, pixel_bytes: int, missing: int = 0) -> None:
    """A sparse file: MR_small's header, then Pixel Data declared (and sized) as ``pixel_bytes``."""
    data = _bytes("MR_small.dcm")
    stream = io.BytesIO(data)
    pydicom.dcmread(stream, stop_before_pixels=True)
    header = data[: stream.tell()] + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<L", pixel_bytes)
    with path.open("wb") as out:
        out.write(header)
        out.truncate(len(header) + pixel_bytes - missing)


def test_a_2_gb_file_costs_what_a_small_one_costs(tmp_path):
    path = tmp_path / "multiframe.dcm"
    _huge_multiframe(path, 2_000_000_000)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        instance = read_path(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert instance.attributes["Modality"] == "MR"
    assert peak < 2 * 1024 * 1024
    assert time.perf_counter() - started < 1.0


def test_a_cut_off_2_gb_file_is_reported_truncated(tmp_path):
    path = tmp_path / "cut.dcm"
    _huge_multiframe(path, 2_000_000_000, missing=1)
    with pytest.raises(DicomReadError, match="pixel data is incomplete"):
        read_path(path)
