"""What each page shows, read through the viewer (authorised, audited) or the catalogue (public).

Every function takes a ``Viewer`` (or the services, for the public catalogue) and returns plain
values for its template; a part of a page the viewer's scopes do not reach is returned as the
``Forbidden`` it raised, and the template says which scopes it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from fhir_bridge.audit.events import audit_event
from fhir_bridge.audit.log import DIMSE, DIMSE_OUTCOME_STATUS
from fhir_bridge.catalogue.disclosure import AGE_STEP, disclosed, typical_age_range
from fhir_bridge.catalogue.statistics import Value
from fhir_bridge.mapping.annotation import SEGMENT_EXTENSION
from fhir_bridge.mapping.codes import body_parts
from fhir_bridge.security.policy import counts_needs
from fhir_bridge.ui.charts import Bar, bar_chart, column_chart
from fhir_bridge.ui.viewer import Forbidden, Viewer

T = TypeVar("T")
PATHS = {"STOW-RS": "STOW-RS", "command line": "folder", "DICOM C-STORE": "DIMSE"}  # DICOM channels -> path
PATH_NAMES = ("STOW-RS", "folder", "DIMSE", "clinical")
RECENT_PUSHES = 200  # Provenances read for the activity page (filters apply to these)
DIMSE_OUTCOMES = {status: outcome for outcome, status in DIMSE_OUTCOME_STATUS.items()}  # 403 -> refused, ...
RECENT_RECORDS = 500  # audit records scanned for ingest failures


def guarded(read: Callable[[], T]) -> T | Forbidden:
    """``read()``, or the Forbidden it raised: one part of a page the viewer may not see."""
    try:
        return read()
    except Forbidden as refused:
        return refused


# ingest activity ---------------------------------------------------------------------------------
@dataclass
class Push:
    provenance_id: str
    recorded: str
    path: str
    sender: str
    received: str  # "12 instances of 2 studies", "records 1-50 through the mapping x"
    written: dict[str, int]  # resource type -> versions written


@dataclass
class Problem:
    recorded: str
    path: str
    sender: str
    status: str
    reason: str


def push_of(provenance: dict[str, Any]) -> Push:
    """A Provenance an ingest wrote (``ingest.provenance``), as a row of the activity page."""
    activity = provenance.get("activity", {}).get("text", "")
    kind, _, channel = activity.partition(" (")
    channel = channel.rstrip(")")
    path = "clinical" if kind.startswith("clinical") else PATHS.get(channel, channel or "other")
    performer: dict[str, Any] = next(
        (a for a in provenance.get("agent", ()) if a.get("type", {}).get("coding", [{}])[0].get("code") == "performer"),
        {},
    )
    sender = performer.get("who", {}).get("display", "")
    sender = sender.split(" sender: ", 1)[-1]
    sources = [e["what"].get("display", "") for e in provenance.get("entity", ()) if e.get("role") == "source"]
    written: dict[str, int] = {}
    for target in provenance.get("target", ()):
        kind_of = target.get("reference", "").split("/")[0]
        written[kind_of] = written.get(kind_of, 0) + 1
    if path != "clinical":
        instances = sum(int(s.split(": ")[-1].split()[0]) for s in sources if s.startswith("DICOM study: "))
        received = f"{_plural(instances, 'instance')} of {_plural(len(sources), 'study', 'studies')}"
    else:
        received = "; ".join(sources)
    return Push(provenance["id"], provenance.get("recorded", ""), path, sender, received, written)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _problem(row: Any, dicomweb: str) -> Problem | None:
    """An audit record of an ingest that failed in part or whole (or stored with warnings), else None."""
    if row.method == DIMSE:  # a C-STORE association with failures, or a refused association
        if row.path.endswith("/C-ECHO") or row.status == 200:
            return None
        path = "DIMSE"
    elif row.method == "POST" and dicomweb and row.path.startswith(dicomweb):
        path = "STOW-RS"
    elif row.method == "POST" and row.path.startswith("/ingest"):
        path = "clinical"
    else:
        return None
    if row.status in (200, 201) and not row.detail:
        return None
    event = audit_event(row)
    sender = event["agent"][0]["who"].get("display", "") if row.client_id else row.address or "unknown sender"
    status = DIMSE_OUTCOMES.get(row.status, str(row.status)) if row.method == DIMSE else str(row.status)
    return Problem(event["recorded"], path, sender, status, row.detail or "")


def ingest_activity(viewer: Viewer, path: str, sender: str, since: str) -> dict[str, Any]:
    parameters = [("_sort", "-recorded"), ("_count", str(RECENT_PUSHES))]
    if since:
        parameters.append(("recorded", f"ge{since}"))

    def pushes() -> list[Push]:
        found = [push_of(p) for p in viewer.resources("Provenance", parameters)]
        return [p for p in found if (not path or p.path == path) and (not sender or sender.lower() in p.sender.lower())]

    def problems() -> list[Problem]:
        query = [("subtype", "create,operation")] + ([("date", f"ge{since}")] if since else [])
        dicomweb = viewer.services.settings.dicomweb_path.rstrip("/")
        found = [_problem(row, dicomweb) for row in viewer.audit_records(query, RECENT_RECORDS)]
        return [
            p
            for p in found
            if p and (not path or p.path == path) and (not sender or sender.lower() in p.sender.lower())
        ]

    listed = guarded(pushes)
    totals: dict[str, int] = {}
    if not isinstance(listed, Forbidden):
        for push in listed:
            totals[push.path] = totals.get(push.path, 0) + 1
    return {
        "pushes": listed,
        "problems": guarded(problems),
        "chart": guarded(lambda: studies_over_time(viewer)),
        "path_totals": totals,
        "paths": PATH_NAMES,
        "filters": {"path": path, "sender": sender, "since": since},
    }


def studies_over_time(viewer: Viewer) -> Any:
    """Studies by the month (or, over long spans, the year) they were acquired: one count search per column."""
    first = viewer.resources("ImagingStudy", [("_sort", "started"), ("_count", "1"), ("_elements", "started")])
    last = viewer.resources("ImagingStudy", [("_sort", "-started"), ("_count", "1"), ("_elements", "started")])
    if not first or "started" not in first[0] or "started" not in last[0]:
        return column_chart("Imaging studies by acquisition date", [])
    start, end = first[0]["started"][:7], last[0]["started"][:7]
    (y0, m0), (y1, m1) = (int(start[:4]), int(start[5:7])), (int(end[:4]), int(end[5:7]))
    months = (y1 - y0) * 12 + (m1 - m0) + 1
    columns = []
    if months <= 18:
        for step in range(months):
            year, month = y0 + (m0 - 1 + step) // 12, (m0 - 1 + step) % 12 + 1
            label = f"{year}-{month:02d}"
            columns.append(Bar(label, viewer.count("ImagingStudy", [("started", label)])))
    else:
        for year in range(max(y0, y1 - 14), y1 + 1):
            older = year == y1 - 14 and y0 < year
            criterion = f"le{year}" if older else str(year)
            columns.append(
                Bar(f"≤{year}" if older else str(year), viewer.count("ImagingStudy", [("started", criterion)]))
            )
    return column_chart("Imaging studies by acquisition date", columns)


# browse ------------------------------------------------------------------------------------------
@dataclass
class StudyRow:
    id: str
    started: str
    modalities: str
    body_sites: str
    description: str
    series: int
    instances: int


def _codes(concepts: list[dict[str, Any]]) -> str:
    names = []
    for concept in concepts:
        coding = concept if "code" in concept else (concept.get("coding") or [{}])[0]
        shown = (
            coding.get("display") or _body_part_name(coding.get("code")) or coding.get("code") or concept.get("text")
        )
        if shown and shown not in names:
            names.append(shown)
    return ", ".join(names)


def _body_part_name(code: str | None) -> str | None:
    return {c: name for c, name in body_parts().values()}.get(code or "")


def study_row(study: dict[str, Any]) -> StudyRow:
    series = study.get("series", ())
    return StudyRow(
        study["id"],
        study.get("started", "")[:16].replace("T", " "),
        _codes([s["modality"] for s in series if "modality" in s]),
        _codes([s["bodySite"] for s in series if "bodySite" in s]),
        study.get("description", ""),
        study.get("numberOfSeries", len(series)),
        study.get("numberOfInstances", sum(len(s.get("instance", ())) for s in series)),
    )


@dataclass
class PatientRow:
    id: str
    gender: str
    born: str
    studies: list[StudyRow] = field(default_factory=list)


def patients(viewer: Viewer, cursor: str | None) -> dict[str, Any]:
    parameters = [("_count", "20"), ("_revinclude", "ImagingStudy:subject"), ("_sort", "-_lastUpdated")]
    if cursor:
        parameters.append(("_cursor", cursor))
    bundle = viewer.search("Patient", parameters)
    rows: dict[str, PatientRow] = {}
    studies = []
    for entry in bundle.get("entry", ()):
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            rows[resource["id"]] = PatientRow(resource["id"], resource.get("gender", ""), resource.get("birthDate", ""))
        else:
            studies.append(resource)
    for study in studies:
        owner = study.get("subject", {}).get("reference", "").removeprefix("Patient/")
        if owner in rows:
            rows[owner].studies.append(study_row(study))
    next_link = next((link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"), None)
    next_cursor = next_link.split("_cursor=", 1)[1].split("&")[0] if next_link and "_cursor=" in next_link else None
    return {"patients": list(rows.values()), "next_cursor": next_cursor, "total": bundle.get("total")}


def patient(viewer: Viewer, patient_id: str) -> dict[str, Any] | None:
    resource = viewer.read("Patient", patient_id)
    if resource is None:
        return None
    subject = [("subject", f"Patient/{patient_id}")]
    return {
        "patient": resource,
        "studies": guarded(
            lambda: [study_row(s) for s in viewer.resources("ImagingStudy", [*subject, ("_sort", "-started")])]
        ),
        "reports": guarded(lambda: viewer.resources("DiagnosticReport", [*subject, ("_sort", "-date")])),
        "conditions": guarded(lambda: viewer.resources("Condition", subject)),
    }


@dataclass
class Segment:
    series: str
    number: str
    label: str
    structure: str
    algorithm: str


def _segments(study: dict[str, Any]) -> list[Segment]:
    found = []
    for series in study.get("series", ()):
        for instance in series.get("instance", ()):
            for extension in instance.get("extension", ()):
                if extension.get("url") != SEGMENT_EXTENSION:
                    continue
                parts = {e["url"]: e for e in extension.get("extension", ())}

                def value(name: str, parts: dict[str, Any] = parts) -> Any:
                    part = parts.get(name, {})
                    return next((v for k, v in part.items() if k.startswith("value")), None)

                structure = value("type")  # the segmented structure (mapping.annotation)
                algorithm = value("algorithmType")
                found.append(
                    Segment(
                        str(series.get("number", "")),
                        str(value("number") or ""),
                        value("label") or "",
                        _codes([structure]) if structure else "",
                        " ".join(x for x in ((algorithm or {}).get("display"), value("algorithmName")) if x),
                    )
                )
    return found


def study(viewer: Viewer, study_id: str) -> dict[str, Any] | None:
    resource = viewer.read("ImagingStudy", study_id)
    if resource is None:
        return None
    reference = f"ImagingStudy/{study_id}"
    series = [
        {
            "number": s.get("number", ""),
            "modality": _codes([s["modality"]]) if "modality" in s else "",
            "body_site": _codes([s["bodySite"]]) if "bodySite" in s else "",
            "description": s.get("description", ""),
            "instances": s.get("numberOfInstances", len(s.get("instance", ()))),
            "uid": s.get("uid", ""),
        }
        for s in resource.get("series", ())
    ]
    return {
        "study": resource,
        "row": study_row(resource),
        "series": series,
        "segments": _segments(resource),
        "observations": guarded(lambda: viewer.resources("Observation", [("derived-from", reference)])),
        "provenance": guarded(
            lambda: [
                push_of(p) for p in viewer.resources("Provenance", [("target", reference), ("_sort", "-recorded")])
            ]
        ),
    }


# catalogue ---------------------------------------------------------------------------------------
@dataclass
class Published:
    label: str
    value: int | None  # None: withheld

    def shown(self, threshold: int) -> str:
        return str(self.value) if self.value is not None else f"< {threshold}"


def _value_name(value: Value) -> str:
    return _body_part_name(value.code) or value.code


def _published(counts: dict[Value, int], threshold: int) -> list[Published]:
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0].code))
    return [Published(_value_name(v), disclosed(n, threshold)) for v, n in ordered]


def age_bands(ages: dict[int, int], threshold: int) -> list[Published]:
    """Patients per band of AGE_STEP years at their first study, each band published by the threshold rule."""
    bands: dict[int, int] = {}
    for age, n in ages.items():
        bands[age // AGE_STEP * AGE_STEP] = bands.get(age // AGE_STEP * AGE_STEP, 0) + n
    return [Published(f"{low}-{low + AGE_STEP - 1}", disclosed(n, threshold)) for low, n in sorted(bands.items())]


def _day(micros: int | None) -> str:
    return datetime.fromtimestamp(micros / 1_000_000, UTC).date().isoformat() if micros else ""


STRATA = {  # the page's dimensions -> the ``stratify`` of /catalogue/counts (whose scopes the counts need)
    "Modality": "modality",
    "Body part": "bodypart",
    "Sex": "sex",
    "Age at first study": "age",
    "Manufacturer": "manufacturer",
    "Condition": "condition",
    "Segmented structure": "segmentation",
}


def catalogue(viewer: Viewer) -> dict[str, Any]:
    """The description as harvesters read it; the counts per value only to a viewer /catalogue/counts would answer."""
    services = viewer.services
    catalogue = services.catalogue
    statistics = catalogue.current_statistics()
    threshold = catalogue.threshold
    config = services.catalogue_config
    dimensions = {  # the description lists a value (not its count) when at least ``threshold`` subjects have it
        "Modality": ("eucaim:hasImageModality", _published(statistics.modalities, threshold)),
        "Body part": ("eucaim:hasImageBodyPart", _published(statistics.body_parts, threshold)),
        "Sex": ("eucaim:hasBirthSex", _published(statistics.sexes, threshold)),
        "Age at first study": ("5-year bands, by the same rule", age_bands(statistics.ages, threshold)),
        "Manufacturer": ("eucaim:hasEquipmentManufacturer", _published(statistics.manufacturers, threshold)),
        "Condition": ("eucaim:hasCondition", _published(statistics.conditions, threshold)),
        "Segmented structure": ("eucaim:hasAnnotationLabel", _published(statistics.segmentations, threshold)),
    }
    refused: dict[str, Forbidden] = {}
    for name, (property_name, values) in list(dimensions.items()):
        missing = viewer.missing(counts_needs([("stratify", STRATA[name])]))
        if missing:  # the values the description lists, not their counts nor what it leaves out
            refused[name] = Forbidden(missing)
            dimensions[name] = (property_name, [Published(p.label, None) for p in values if p.value is not None])
    if len(refused) < len(dimensions):
        viewer.note("search-system", "catalogue counts: " + ",".join(STRATA[n] for n in dimensions if n not in refused))
    charts = {
        name: refused.get(name) or bar_chart(f"{name} (subjects)", [Bar(p.label, p.value) for p in values], threshold)
        for name, (_property, values) in dimensions.items()
        if name in ("Modality", "Body part", "Sex", "Age at first study")
    }
    subjects = disclosed(statistics.study_subjects, threshold)
    annotated_subjects, annotated_studies = statistics.annotated
    typical = typical_age_range(statistics.ages, threshold)
    started = statistics.started
    withheld = f"withheld (< {threshold} subjects)"
    fields = [
        ("Title (dct:title)", config.title),
        ("Description (dct:description)", config.description),
        ("Publisher (dct:publisher)", config.publisher_name),
        ("Publisher home page (foaf:homepage)", config.publisher_url or ""),
        ("Contact (dcat:contactPoint)", config.contact_email or config.contact_url or ""),
        ("Identifier (dct:identifier)", config.dataset_id or ""),
        ("Version (dcat:version)", config.version or (_day(statistics.modified).replace("-", ".") or "")),
        ("Keywords (dcat:keyword)", ", ".join(config.keywords)),
        ("Access rights (dct:accessRights)", config.access_rights),
        ("Legislation (dcatap:applicableLegislation)", ", ".join(config.applicable_legislation)),
        ("Last modified (dct:modified)", _day(statistics.modified)),
        (
            "Temporal coverage (dct:temporal)",
            (f"{_day(started[0])[:7]} to {_day(started[1])[:7]}" if subjects is not None else withheld)
            if started
            else "",
        ),
        (
            "Typical age (healthdcatap:minTypicalAge, maxTypicalAge)",
            f"{typical[0]} to {typical[1]} years" if typical else withheld,
        ),
    ]
    counts = [
        Published("Subjects (healthdcatap:numberOfUniqueIndividuals)", subjects),
        Published(
            "Imaging studies (healthdcatap:numberOfRecords)", statistics.studies if subjects is not None else None
        ),
        Published(
            "Annotated studies (eucaim:nbrOfSegmentations)",
            annotated_studies if disclosed(annotated_subjects, threshold) is not None else None,
        ),
    ]
    return {
        "threshold": threshold,
        "refused": refused,
        "fields": fields,
        "counts": counts,
        "dimensions": dimensions,
        "charts": charts,
        "today": date.today().isoformat(),
    }


# audit -------------------------------------------------------------------------------------------
AUDIT_FILTERS = ("agent-name", "action", "outcome", "entity-type", "entity", "date")


def audit(viewer: Viewer, filters: dict[str, str]) -> dict[str, Any]:
    parameters = []
    for name in AUDIT_FILTERS:
        value = filters.get(name, "").strip()
        if value:
            parameters.append((name, f"ge{value}" if name == "date" and value[:2].isdigit() else value))
    rows = viewer.audit_records(parameters, 100)
    return {"events": [(row, audit_event(row)) for row in rows], "filters": filters}
