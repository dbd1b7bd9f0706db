"""A small, fully known data set for the EUCAIM tests, loaded through the FHIR API.

14 Patients e0..e13, each with the Conditions and ImagingStudies below (codes as the DICOM and clinical
mappings write them; manufacturers as DICOM Manufacturer spells them):

    id   gender   diagnoses (system code onset)              studies: started, series (modality body-site maker)
    e0   female   SCT 254837009 breast 2020-01-10            2020-01-20 MR breast SIEMENS; 2024-06-01 CT lung GE
    e1   female   ICD C50.4 2021-03-01                       2021-03-05 MR breast(left) Philips
    e2   female   SCT 254837009 + ICD C50.9 2019-05-05       2019-05-10 MR breast SIEMENS + PT breast SIEMENS
    e3   female   SCT 93761005 colon 2022-02-02              2022-02-03 CT colon GE
    e4   male     SCT 399068003 prostate 2018-07-07          2018-07-08 MR prostate Philips
    e5   male     ICD C61 2017-01-01, ICD C34.1 2019-01-01   2017-01-05 MR prostate SIEMENS; 2019-01-05 CT lung TOSHIBA
    e6   male     SCT 254637007 NSCLC 2021-09-09             2021-09-10 CT lung GE + ST lung Siemens Healthineers
    e7   male     ICD C76.3 pelvis 2020-04-04                2020-04-05 MR pelvis SIEMENS
    e8   other    SCT 254837009 2023-03-03                   2023-03-04 MR breast SIEMENS
    e9   unknown  ICD C18.7 2016-06-06                       2016-06-07 CT colon SIEMENS
    e10  female   (none)                                     2020-02-02 MR breast SIEMENS   -> not a subject
    e11  female   SCT 363346000 (unmapped) 2020-08-08        2020-08-09 MR breast SIEMENS
    e12  male     SCT 399068003 2015-05-05                   (no study)
    e13  (none)   ICD C50.1 2022-12-12                       2022-12-13 US breast SIEMENS

So 13 subjects (not e10), 14 studies of 12 of them. Birth years 1950 + 2i.
"""

from __future__ import annotations

from typing import Any

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10"
SITES = {"breast": "76752008", "lung": "39607008", "colon": "71854001", "prostate": "41216001", "pelvis": "816092008"}
LEFT = "7771000"
MAKERS = {
    "siemens": "SIEMENS",
    "healthineers": "Siemens Healthineers",
    "ge": "GE MEDICAL SYSTEMS",
    "philips": "Philips Medical Systems",
    "toshiba": "TOSHIBA",
}
Series = tuple[str, str, str]  # modality, body site, device
PATIENTS: list[tuple[str | None, list[tuple[tuple[tuple[str, str], ...], str]], list[tuple[str, list[Series]]]]] = [
    (
        "female",
        [(((SCT, "254837009"),), "2020-01-10")],
        [("2020-01-20", [("MR", "breast", "siemens")]), ("2024-06-01", [("CT", "lung", "ge")])],
    ),
    ("female", [(((ICD, "C50.4"),), "2021-03-01")], [("2021-03-05", [("MR", "breast", "philips")])]),
    (
        "female",
        [(((SCT, "254837009"), (ICD, "C50.9")), "2019-05-05")],
        [("2019-05-10", [("MR", "breast", "siemens"), ("PT", "breast", "siemens")])],
    ),
    ("female", [(((SCT, "93761005"),), "2022-02-02")], [("2022-02-03", [("CT", "colon", "ge")])]),
    ("male", [(((SCT, "399068003"),), "2018-07-07")], [("2018-07-08", [("MR", "prostate", "philips")])]),
    (
        "male",
        [(((ICD, "C61"),), "2017-01-01"), (((ICD, "C34.1"),), "2019-01-01")],
        [("2017-01-05", [("MR", "prostate", "siemens")]), ("2019-01-05", [("CT", "lung", "toshiba")])],
    ),
    (
        "male",
        [(((SCT, "254637007"),), "2021-09-09")],
        [("2021-09-10", [("CT", "lung", "ge"), ("ST", "lung", "healthineers")])],
    ),
    ("male", [(((ICD, "C76.3"),), "2020-04-04")], [("2020-04-05", [("MR", "pelvis", "siemens")])]),
    ("other", [(((SCT, "254837009"),), "2023-03-03")], [("2023-03-04", [("MR", "breast", "siemens")])]),
    ("unknown", [(((ICD, "C18.7"),), "2016-06-06")], [("2016-06-07", [("CT", "colon", "siemens")])]),
    ("female", [], [("2020-02-02", [("MR", "breast", "siemens")])]),
    ("female", [(((SCT, "363346000"),), "2020-08-08")], [("2020-08-09", [("MR", "breast", "siemens")])]),
    ("male", [(((SCT, "399068003"),), "2015-05-05")], []),
    (None, [(((ICD, "C50.1"),), "2022-12-12")], [("2022-12-13", [("US", "breast", "siemens")])]),
]


def study_uid(patient: int, study: int) -> str:
    return f"1.2.826.0.1.3680043.10.543.{patient}.{study}"


def resources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"resourceType": "Device", "id": key, "manufacturer": name} for key, name in MAKERS.items()
    ]
    for i, (gender, diagnoses, studies) in enumerate(PATIENTS):
        patient: dict[str, Any] = {"resourceType": "Patient", "id": f"e{i}", "birthDate": str(1950 + 2 * i)}
        if gender:
            patient["gender"] = gender
        found.append(patient)
        for j, (codings, onset) in enumerate(diagnoses):
            found.append(
                {
                    "resourceType": "Condition",
                    "id": f"e{i}c{j}",
                    "subject": {"reference": f"Patient/e{i}"},
                    "code": {"coding": [{"system": s, "code": c} for s, c in codings]},
                    "bodySite": [{"coding": [{"system": SCT, "code": SITES["breast"]}]}] if i == 0 else None,
                    "onsetDateTime": onset,
                }
            )
            if found[-1]["bodySite"] is None:
                del found[-1]["bodySite"]
        for j, (started, series) in enumerate(studies):
            uid = study_uid(i, j)
            found.append(
                {
                    "resourceType": "ImagingStudy",
                    "id": f"e{i}s{j}",
                    "status": "available",
                    "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
                    "subject": {"reference": f"Patient/e{i}"},
                    "started": f"{started}T10:00:00Z",
                    "series": [_series(f"{uid}.{k}", k + 1, *s, left=i == 1) for k, s in enumerate(series)],
                }
            )
    return found


def _series(uid: str, number: int, modality: str, site: str, device: str, *, left: bool) -> dict[str, Any]:
    series: dict[str, Any] = {
        "uid": uid,
        "number": number,
        "modality": {"system": DCM, "code": modality},
        "bodySite": {"system": SCT, "code": SITES[site]},
        "performer": [{"actor": {"reference": f"Device/{device}"}}],
    }
    if left:
        series["laterality"] = {"system": SCT, "code": LEFT}
    return series


def transaction(items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Resources as one transaction Bundle (PUT, so the ids above are kept)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in (items if items is not None else resources())
        ],
    }
