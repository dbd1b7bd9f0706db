"""A DICOM structured report -> a DiagnosticReport, its Observations, and (Key Object Selection) its key images.

The content tree arrives de-identified: TEXT values are present only where the privacy policy keeps
free text, person names never. What becomes what:

- the document -> ``DiagnosticReport``: ``code`` from the document title (the root concept name),
  ``status`` from the Completion, Verification and Preliminary flags, ``effectiveDateTime`` the time of
  the imaging (the study's start), ``issued`` the verification (else content) date and time,
  ``imagingStudy`` its own study and those of its Current Requested Procedure Evidence, ``conclusion``
  and ``presentedForm`` (the tree rendered as text) only when free text was kept;
- a CONTAINER whose concept is a measurement group (TID 1501 / 1410 / 1411) -> a grouping
  ``Observation``: code "Measurement Group", value the Finding, category the Finding category,
  ``hasMember`` its measurements and qualitative evaluations; a tracked finding (Tracking UID) -> a
  ``BodyStructure`` that the group and its members reference as ``focus``;
- a NUM item -> an ``Observation`` with ``valueQuantity`` (UCUM when the units are UCUM-coded),
  ``bodySite`` (Finding Site), ``method`` (Measurement Method), Derivation as a ``component``;
- a CODE item that the template does not make a property of its group -> an ``Observation`` with
  ``valueCodeableConcept`` (a qualitative evaluation);
- ``DiagnosticReport.result`` lists the groups and the measurements outside groups; all
  Observations are ``derivedFrom`` the ImagingStudy.
- Key Object Selection: each selected instance -> a ``Media`` (identified by its SOP Instance UID,
  ``partOf`` its study, content ``application/dicom`` at the WADO-RS URL when configured), listed
  in ``DiagnosticReport.media``: the R4 representation of the HL7 Europe Imaging R4 IG's key images
  (R4 has no ImagingSelection; R3's ImagingManifest was withdrawn).

Which concept does what is data (``data/sr_concepts.tsv``).
"""

from __future__ import annotations

import base64
import csv
import math
import re
from functools import cache
from importlib.resources import files
from typing import Any

from fhir_bridge.dicom.sr import KEY_OBJECT_SELECTION
from fhir_bridge.mapping import codes
from fhir_bridge.mapping.study_context import IMAGING, StudyContext, reference, tracked_finding, uid_identifier

V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
RADIOLOGY = {"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}
IMAGE_MEDIA = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "image"}]}
UNKNOWN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]}
GROUP_PROPERTIES = frozenset({"finding", "finding-category", "tracking-identifier", "tracking-uid"})
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@cache
def concept_roles() -> dict[tuple[str, str], str]:
    """(coding scheme designator, code) -> role, from ``data/sr_concepts.tsv``."""
    text = files("fhir_bridge.mapping").joinpath("data/sr_concepts.tsv").read_text(encoding="utf-8")
    rows = csv.DictReader((line for line in text.splitlines() if not line.startswith("#")), delimiter="\t")
    return {(row["designator"], row["code"]): row["role"] for row in rows}


def report_resources(attributes: dict[str, Any], context: StudyContext) -> list[dict[str, Any]]:
    """The DiagnosticReport of an SR instance and what it references (Observations, BodyStructures, Media)."""
    return _Report(attributes, context).resources()


def report_status(attributes: dict[str, Any]) -> str:
    """DiagnosticReport.status from the SR Document General module's flags (a KOS has none: it is final)."""
    completion = codes.text(attributes.get("CompletionFlag"))
    verification = codes.text(attributes.get("VerificationFlag"))
    if attributes.get("SOPClassUID") == KEY_OBJECT_SELECTION:
        return "final"
    if completion == "PARTIAL":
        return "partial"
    if codes.text(attributes.get("PreliminaryFlag")) == "PRELIMINARY":
        return "preliminary"
    if verification == "VERIFIED":
        return "final"
    return "preliminary" if completion or verification else "unknown"


def _role(item: dict[str, Any]) -> str | None:
    for code in item.get("ConceptNameCodeSequence") or []:
        designator, value = codes.designated(code)
        if value and (role := concept_roles().get((designator, value))):
            return role
    return None


def _number(text: Any) -> int | float | None:
    candidate = codes.first(text)
    if candidate is None:
        return None
    try:
        number = float(candidate)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if re.fullmatch(r"[+-]?\d+", candidate) else number


def _quantity(item: dict[str, Any]) -> dict[str, Any] | None:
    measured = (item.get("MeasuredValueSequence") or [{}])[0]
    value = _number(measured.get("FloatingPointValue") or measured.get("NumericValue"))
    if value is None:
        return None
    quantity: dict[str, Any] = {"value": value}
    units = (measured.get("MeasurementUnitsCodeSequence") or [None])[0]
    if units:
        designator, code = codes.designated(units)
        meaning = codes.text(units.get("CodeMeaning"))
        if meaning or code:
            quantity["unit"] = meaning or code
        if designator == "UCUM" and code:
            quantity["system"] = codes.CODING_SCHEMES["UCUM"]
            quantity["code"] = code
    return quantity


def _instant(value: str | None) -> str | None:
    return value if value and _INSTANT.match(value) else None


class _Report:
    """Builds the resources of one SR instance; ids are derived from its SOP Instance UID and tree positions."""

    def __init__(self, attributes: dict[str, Any], context: StudyContext) -> None:
        self.attributes = attributes
        self.context = context
        self.sop_uid: str = attributes["SOPInstanceUID"]
        self.status = report_status(attributes)
        zone = context.time_zone
        self.effective = context.effective or codes.fhir_datetime(
            attributes.get("ContentDate"), attributes.get("ContentTime"), attributes.get("TimezoneOffsetFromUTC"), zone
        )
        self.issued = self._issued()
        self.key_object_selection = attributes["SOPClassUID"] == KEY_OBJECT_SELECTION
        self.evidence = self._evidence()
        self.observations: list[dict[str, Any]] = []
        self.bodies: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.conclusions: list[str] = []
        self.conclusion_codes: list[dict[str, Any]] = []

    def _issued(self) -> str | None:
        zone = self.context.time_zone
        verified = [
            instant
            for item in self.attributes.get("VerifyingObserverSequence") or []
            if (instant := _instant(codes.fhir_datetime_of(item.get("VerificationDateTime"), zone)))
        ]
        if verified and codes.text(self.attributes.get("VerificationFlag")) == "VERIFIED":
            return max(verified)
        content = codes.fhir_datetime(
            self.attributes.get("ContentDate"),
            self.attributes.get("ContentTime"),
            self.attributes.get("TimezoneOffsetFromUTC"),
            zone,
        )
        return _instant(content)

    def _evidence(self) -> dict[str, tuple[str, str]]:
        """SOP Instance UID -> (study UID, series UID) of the instances the report is about."""
        found: dict[str, tuple[str, str]] = {}
        for study in self.attributes.get("CurrentRequestedProcedureEvidenceSequence") or []:
            for series in study.get("ReferencedSeriesSequence") or []:
                for instance in series.get("ReferencedSOPSequence") or []:
                    uid = instance.get("ReferencedSOPInstanceUID")
                    if isinstance(uid, str) and study.get("StudyInstanceUID") and series.get("SeriesInstanceUID"):
                        found.setdefault(uid, (study["StudyInstanceUID"], series["SeriesInstanceUID"]))
        return found

    # the report ------------------------------------------------------------------------------
    def resources(self) -> list[dict[str, Any]]:
        results = self._contents(self.attributes.get("ContentSequence") or [], "", None)
        context = self.context
        report = context.resource("DiagnosticReport", codes.resource_id("DiagnosticReport", self.sop_uid))
        report["identifier"] = [uid_identifier(self.sop_uid)]
        report["status"] = self.status
        report["category"] = [RADIOLOGY]
        title = codes.concept(self.attributes.get("ConceptNameCodeSequence"))
        report["code"] = title or {"text": "Key Object Selection" if self.key_object_selection else "Structured report"}
        report["subject"] = context.subject
        if self.effective:
            report["effectiveDateTime"] = self.effective
        if self.issued:
            report["issued"] = self.issued
        report["imagingStudy"] = self._studies()
        if results:
            report["result"] = results
        if self.media:
            report["media"] = [{"link": reference(media)} for media in self.media.values()]
        if self.conclusions:
            report["conclusion"] = "\n".join(self.conclusions)
        if self.conclusion_codes:
            report["conclusionCode"] = self.conclusion_codes
        rendered = _render(self.attributes.get("ContentSequence") or [])
        if rendered is not None:
            attachment = {"contentType": "text/plain; charset=utf-8", "data": base64.b64encode(rendered).decode()}
            if heading := _label(title):
                attachment["title"] = heading
            report["presentedForm"] = [attachment]
        return [report, *self.observations, *self.bodies.values(), *self.media.values()]

    def _studies(self) -> list[dict[str, Any]]:
        studies = [self.context.study]
        for item in self.attributes.get("CurrentRequestedProcedureEvidenceSequence") or []:
            uid = item.get("StudyInstanceUID")
            if isinstance(uid, str) and (found := self.context.study_reference(uid)) not in studies:
                studies.append(found)
        return studies

    # the content tree ---------------------------------------------------------------------------
    def _contents(self, items: list[dict[str, Any]], path: str, group: _Group | None) -> list[dict[str, str]]:
        """The Observations of ``items`` (and of the sections among them), as references."""
        found: list[dict[str, str]] = []
        for index, item in enumerate(items, 1):
            where = f"{path}.{index}" if path else str(index)
            if item.get("RelationshipType") not in (None, "CONTAINS"):
                continue  # qualifiers are read by their parent item; evidence (INFERRED FROM, ...) is not mapped
            kind, role = item.get("ValueType"), _role(item)
            if role == "conclusion":
                self._conclusion(item)
            elif kind == "CONTAINER" and role == "group":
                found.append(self._group(item, where))
            elif kind == "CONTAINER":
                found.extend(self._contents(item.get("ContentSequence") or [], where, group))
            elif kind == "NUM" or (kind == "CODE" and not (group is not None and role in GROUP_PROPERTIES)):
                if (observation := self._observation(item, where, group)) is not None:
                    found.append(observation)
            elif kind in ("IMAGE", "COMPOSITE") and self.key_object_selection:
                self._key_images(item)
        return found

    def _conclusion(self, item: dict[str, Any]) -> None:
        if text := codes.text(item.get("TextValue")):
            self.conclusions.append(text)
        elif value := codes.concept(item.get("ConceptCodeSequence")):
            self.conclusion_codes.append(value)

    def _group(self, item: dict[str, Any], where: str) -> dict[str, str]:
        children = item.get("ContentSequence") or []
        qualifiers = _qualifiers(children, contained=GROUP_PROPERTIES)
        group = _Group(
            body=self._tracked(qualifiers),
            site=_value(qualifiers, "finding-site"),
            method=_value(qualifiers, "method"),
        )
        members = self._contents(children, where, group)
        observation = self._base(item, where, codes.concept(item.get("ConceptNameCodeSequence")) or {"text": "Group"})
        for category in qualifiers.get("finding-category", []):
            if value := codes.concept(category.get("ConceptCodeSequence")):
                observation["category"].append(value)
        self._qualify(observation, qualifiers, group)
        if finding := _value(qualifiers, "finding"):
            observation["valueCodeableConcept"] = finding
        if members:
            observation["hasMember"] = members
        self.observations.append(observation)
        return reference(observation)

    def _tracked(self, qualifiers: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
        """The BodyStructure of the group's tracked finding, when it has a Tracking UID."""
        uid = next((q.get("UID") for q in qualifiers.get("tracking-uid", []) if isinstance(q.get("UID"), str)), None)
        if uid is None:
            return None
        label = next((codes.text(q.get("TextValue")) for q in qualifiers.get("tracking-identifier", [])), None)
        body = tracked_finding(
            self.context, uid, label, _value(qualifiers, "finding"), _value(qualifiers, "finding-site")
        )
        return self.bodies.setdefault(body["id"], body)

    def _observation(self, item: dict[str, Any], where: str, group: _Group | None) -> dict[str, str] | None:
        code = codes.concept(item.get("ConceptNameCodeSequence"))
        if code is None:
            return None
        observation = self._base(item, where, code)
        qualifiers = _qualifiers(item.get("ContentSequence") or [])
        self._qualify(observation, qualifiers, group)
        if item.get("ValueType") == "NUM":
            if quantity := _quantity(item):
                observation["valueQuantity"] = quantity
            else:
                reason: dict[str, Any] = dict(UNKNOWN)
                if why := _label(codes.concept(item.get("NumericValueQualifierCodeSequence"))):
                    reason["text"] = why
                observation["dataAbsentReason"] = reason
        elif value := codes.concept(item.get("ConceptCodeSequence")):
            observation["valueCodeableConcept"] = value
        else:
            observation["dataAbsentReason"] = UNKNOWN
        derivations = [
            {"code": name, "valueCodeableConcept": value}
            for derivation in qualifiers.get("derivation", [])
            if (name := codes.concept(derivation.get("ConceptNameCodeSequence")))
            and (value := codes.concept(derivation.get("ConceptCodeSequence")))
        ]
        if derivations:
            observation["component"] = derivations
        self.observations.append(observation)
        return reference(observation)

    def _base(self, item: dict[str, Any], where: str, code: dict[str, Any]) -> dict[str, Any]:
        context = self.context
        observation = context.resource("Observation", codes.resource_id("Observation", self.sop_uid, where))
        if isinstance(uid := item.get("ObservationUID"), str):
            observation["identifier"] = [uid_identifier(uid)]
        observation["status"] = "preliminary" if self.status == "partial" else self.status
        observation["category"] = [IMAGING]
        observation["code"] = code
        observation["subject"] = context.subject
        if self.effective:
            observation["effectiveDateTime"] = self.effective
        if self.issued:
            observation["issued"] = self.issued
        return observation

    def _qualify(
        self, observation: dict[str, Any], qualifiers: dict[str, list[dict[str, Any]]], group: _Group | None
    ) -> None:
        """focus (the tracked finding), bodySite, method and derivedFrom, in FHIR's element order."""
        body = group.body if group else None
        if body is not None:
            observation["focus"] = [reference(body)]
        if site := _value(qualifiers, "finding-site") or (group.site if group else None):
            observation["bodySite"] = site
        if method := _value(qualifiers, "method") or (group.method if group else None):
            observation["method"] = method
        observation["derivedFrom"] = [self.context.study]

    # key images -------------------------------------------------------------------------------
    def _key_images(self, item: dict[str, Any]) -> None:
        for selected in item.get("ReferencedSOPSequence") or []:
            uid = selected.get("ReferencedSOPInstanceUID")
            if isinstance(uid, str) and uid not in self.media:
                self.media[uid] = self._media(uid)

    def _media(self, uid: str) -> dict[str, Any]:
        context = self.context
        media = context.resource("Media", codes.resource_id("Media", uid))
        media["identifier"] = [uid_identifier(uid)]
        study_uid, series_uid = self.evidence.get(uid, (None, None))
        if study_uid:
            media["partOf"] = [context.study_reference(study_uid)]
        media["status"] = "completed"
        media["type"] = IMAGE_MEDIA
        media["subject"] = context.subject
        content: dict[str, Any] = {"contentType": "application/dicom"}
        base = context.wado_rs_base_url
        if base and study_uid and series_uid:
            content["url"] = f"{base.rstrip('/')}/studies/{study_uid}/series/{series_uid}/instances/{uid}"
        media["content"] = content
        return media


class _Group:
    """What the members of a measurement group inherit from it."""

    def __init__(self, body: dict[str, Any] | None, site: dict[str, Any] | None, method: dict[str, Any] | None):
        self.body = body
        self.site = site
        self.method = method


def _qualifiers(children: list[dict[str, Any]], contained: frozenset[str] = frozenset()) -> dict[str, list[dict]]:
    """Children by role: those that qualify their parent (not CONTAINS), and CONTAINS items of ``contained`` roles."""
    found: dict[str, list[dict[str, Any]]] = {}
    for child in children:
        role = _role(child)
        if role and (child.get("RelationshipType") != "CONTAINS" or role in contained):
            found.setdefault(role, []).append(child)
    return found


def _value(qualifiers: dict[str, list[dict[str, Any]]], role: str) -> dict[str, Any] | None:
    """The coded value of the first qualifier of ``role``."""
    for item in qualifiers.get(role, []):
        if value := codes.concept(item.get("ConceptCodeSequence")):
            return value
    return None


def _label(concept: dict[str, Any] | None) -> str | None:
    """A CodeableConcept's text, else its first coding's display."""
    if not concept:
        return None
    return concept.get("text") or next((c["display"] for c in concept.get("coding", []) if c.get("display")), None)


def _render(items: list[dict[str, Any]]) -> bytes | None:
    """The content tree as indented text ("concept: value" lines); None when it holds no free text, so that a
    report whose free text the privacy policy removed gets no presentedForm."""
    lines: list[str] = []
    has_text = _render_into(items, 0, lines)
    return "\n".join(lines).encode("utf-8") if has_text and lines else None


def _render_into(items: list[dict[str, Any]], depth: int, lines: list[str]) -> bool:
    has_text = False
    for item in items:
        label = _label(codes.concept(item.get("ConceptNameCodeSequence"))) or ""
        kind = item.get("ValueType")
        value: str | None = None
        if kind == "TEXT":
            value = codes.text(item.get("TextValue"))
            has_text = has_text or value is not None
        elif kind == "CODE":
            value = _label(codes.concept(item.get("ConceptCodeSequence")))
        elif kind == "NUM" and (quantity := _quantity(item)):
            value = f"{quantity['value']} {quantity.get('unit', '')}".strip()
        elif kind in ("DATE", "TIME", "DATETIME"):
            value = codes.text(item.get("Date") or item.get("Time") or item.get("DateTime"))
        if (kind == "CONTAINER" and label) or value is not None:
            lines.append(f"{'  ' * depth}{label}{': ' + value if value is not None else ''}")
        has_text = _render_into(item.get("ContentSequence") or [], depth + 1, lines) or has_text
    return has_text
