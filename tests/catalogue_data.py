"""A small, fully known imaging data set for the catalogue tests, loaded through the FHIR API.

12 Patients (p0..p11), born in 1950 + 2i (year only, as pseudonymised birth dates are):
- gender: p0-p6 female, p7-p10 male, p11 other
- one study each, started in year 2019 + i // 3, month 2, 6 or 10; p0 has a second study in 2023-11
- MR of the breast (p0-p6) or the prostate (p7-p9), CT of the chest (p10), CT + US of the abdomen
  (p11); p0's second study: CT of the chest
- equipment: SIEMENS (p0-p7 first studies), GE MEDICAL SYSTEMS (p8-p10 and p0's second study),
  Rare Vendor (p11)
- Conditions: breast cancer (p0-p4), prostate cancer (p7, p8)

So at a threshold of 3: 12 individuals, 13 studies; sexes female and male; modalities MR (10
subjects) and CT (p0, p10, p11); body parts breast and prostate (chest has 2, abdomen 1);
manufacturers SIEMENS (8) and GE (4); condition breast cancer (5); ages at the first study
50..68, so the typical range is 50..65.
"""

from __future__ import annotations

from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
BREAST, PROSTATE, CHEST, ABDOMEN = "76752008", "41216001", "51185008", "818981001"
BREAST_CANCER, PROSTATE_CANCER = "254837009", "399068003"
DEVICES = {"siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS", "rare": "Rare Vendor"}


def _series(uid: str, modality: str, body_site: str, device: str) -> dict[str, Any]:
    return {
        "uid": uid,
        "modality": {"system": DCM, "code": modality},
        "bodySite": {"system": SNOMED, "code": body_site},
        "performer": [{"actor": {"reference": f"Device/{device}"}}],
    }


def _study(study_id: str, patient: str, started: str, series: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": study_id,
        "status": "available",
        "subject": {"reference": f"Patient/{patient}"},
        "started": started,
        "series": series,
    }


def resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"resourceType": "Device", "id": key, "manufacturer": name} for key, name in DEVICES.items()
    ]
    for i in range(12):
        patient = f"p{i}"
        gender = "female" if i <= 6 else "male" if i <= 10 else "other"
        found.append({"resourceType": "Patient", "id": patient, "gender": gender, "birthDate": str(1950 + 2 * i)})
        started = f"{2019 + i // 3}-{(i % 3) * 4 + 2:02d}-15T09:00:00Z"
        if i <= 9:
            series = [_series(f"1.2.3.{i}.1", "MR", BREAST if i <= 6 else PROSTATE, "siemens" if i <= 7 else "ge")]
        elif i == 10:
            series = [_series("1.2.3.10.1", "CT", CHEST, "ge")]
        else:
            series = [_series("1.2.3.11.1", "CT", ABDOMEN, "rare"), _series("1.2.3.11.2", "US", ABDOMEN, "rare")]
        found.append(_study(f"s{i}", patient, started, series))
        code = BREAST_CANCER if i <= 4 else PROSTATE_CANCER if i in (7, 8) else None
        if code:
            found.append(
                {
                    "resourceType": "Condition",
                    "id": f"c{i}",
                    "subject": {"reference": f"Patient/{patient}"},
                    "code": {"coding": [{"system": SNOMED, "code": code, "display": "cancer"}]},
                }
            )
    found.append(_study("s0b", "p0", "2023-11-20T10:00:00Z", [_series("1.2.3.0.2", "CT", CHEST, "ge")]))
    return found


def transaction() -> dict[str, Any]:
    """All of it as one transaction Bundle (PUT, so the ids above are kept)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources()
        ],
    }
