"""Public catalogue routes, outside the FHIR base: ``/catalogue`` (DCAT-AP) and ``/catalogue/counts``."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from fhir_bridge.api.context import base_url, services
from fhir_bridge.catalogue.dcat import Location
from fhir_bridge.catalogue.service import SYNTAXES, Catalogue
from fhir_bridge.catalogue.statistics import DIMENSIONS, Criterion
from fhir_bridge.errors import FhirError

JSON_LD = "application/ld+json"
FORMAT_ALIASES = {
    "jsonld": JSON_LD,
    "json-ld": JSON_LD,
    "json": JSON_LD,
    "turtle": "text/turtle",
    "ttl": "text/turtle",
    "xml": "application/rdf+xml",
    "rdfxml": "application/rdf+xml",
    "nt": "application/n-triples",
    "ntriples": "application/n-triples",
    **{media_type: media_type for media_type in SYNTAXES},
}
# media ranges that mean "JSON-LD" although they do not name it
_JSON_RANGES = {"application/json"}

router = APIRouter()


def _catalogue(request: Request) -> Catalogue:
    return services(request).catalogue


def catalogue_location(request: Request) -> Location:
    """The catalogue's URL (the app's root + /catalogue) and the FHIR base URL, as clients see them."""
    settings = services(request).settings
    fhir_path = settings.fhir_path.rstrip("/")
    fhir_base = base_url(settings, request.scope)  # configured, or (access control on) never from the Host header
    root = fhir_base[: -len(fhir_path)] if fhir_path and fhir_base.endswith(fhir_path) else fhir_base
    return Location(f"{root}/catalogue", fhir_base)


def negotiate(accept: str | None, wanted: str | None = None) -> str:
    """The media type to answer in: ``_format`` wins, else the best ``Accept`` match (JSON-LD by default)."""
    if wanted is not None:
        media_type = FORMAT_ALIASES.get(wanted.strip().lower())
        if media_type is None:
            raise FhirError(406, f"_format {wanted!r} is not offered: {', '.join(SYNTAXES)}", code="not-supported")
        return media_type
    if not accept or not accept.strip():
        return JSON_LD
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media_range, *parameters = (p.strip() for p in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_range:
            ranges.append((media_range.lower(), quality))
    best, best_quality = None, 0.0
    for media_type in SYNTAXES:  # ties go to the first (server preference)
        quality = _quality(media_type, ranges)
        if quality > best_quality:
            best, best_quality = media_type, quality
    if best is None:
        raise FhirError(
            406, f"cannot answer in {accept!r}: the catalogue is offered as {', '.join(SYNTAXES)}", code="not-supported"
        )
    return best


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> float:
    """The q of the most specific range matching ``media_type`` (RFC 9110, 12.5.1); 0 when none does."""
    kind = media_type.split("/")[0]
    exact = [q for r, q in ranges if r == media_type or (media_type == JSON_LD and r in _JSON_RANGES)]
    if exact:
        return max(exact)
    partial = [q for r, q in ranges if r == f"{kind}/*"]
    if partial:
        return max(partial)
    anything = [q for r, q in ranges if r == "*/*"]
    return max(anything) if anything else 0.0


DESCRIPTION_RESPONSES: dict[int | str, dict] = {
    200: {
        "description": "The catalogue, its dataset and the FHIR API as a data service",
        "content": {t: {} for t in SYNTAXES},
    },
    304: {"description": "Not modified (If-None-Match)"},
    406: {"description": "None of the offered RDF syntaxes is acceptable"},
    "4XX": {"description": "An OperationOutcome saying what is wrong", "content": {"application/fhir+json": {}}},
}


@router.get(
    "/catalogue",
    summary="DCAT-AP description of the node (EUCAIM DCAT-AP / HealthDCAT-AP)",
    response_class=Response,
    responses=DESCRIPTION_RESPONSES,
)
def description(
    request: Request,
    format_: Annotated[str | None, Query(alias="_format", description="jsonld, turtle, xml or nt")] = None,
) -> Response:
    media_type = negotiate(request.headers.get("accept"), format_)
    body = _catalogue(request).describe(catalogue_location(request), media_type)
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "no-cache"}
    if etag in [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


_VALUES = "comma-separated values are ORed; repeating the parameter ANDs"
Values = list[str] | None


@router.get(
    "/catalogue/counts",
    summary="Counts of subjects and imaging studies for federated search",
    responses={"4XX": DESCRIPTION_RESPONSES["4XX"]},
)
def counts(
    request: Request,
    sex: Annotated[Values, Query(description=f"Patient.gender code, e.g. female; {_VALUES}")] = None,
    modality: Annotated[Values, Query(description=f"series modality, code or system|code, e.g. MR; {_VALUES}")] = None,
    bodypart: Annotated[Values, Query(description=f"series body site, code or system|code; {_VALUES}")] = None,
    manufacturer: Annotated[Values, Query(description=f"equipment manufacturer name (any case); {_VALUES}")] = None,
    condition: Annotated[
        Values, Query(description=f"Condition.code of the subject, code or system|code; {_VALUES}")
    ] = None,
    segmentation: Annotated[
        Values,
        Query(description=f"a structure segmented in the study (SEG, RTSTRUCT), code or system|code; {_VALUES}"),
    ] = None,
    stratify: Annotated[
        Literal["sex", "modality", "bodypart", "manufacturer", "condition", "segmentation"] | None,
        Query(description="also count per value of this dimension (values below the threshold are left out)"),
    ] = None,
) -> JSONResponse:
    """Subjects are Patients with at least one matching ImagingStudy; counts concerning fewer subjects
    than the threshold are null (docs/catalogue.md, "Small counts")."""
    unknown = sorted({name for name in request.query_params if name not in (*DIMENSIONS, "stratify")})
    if unknown:
        raise FhirError(400, f"unknown parameters: {', '.join(unknown)}", code="not-supported", expression=unknown)
    criteria: list[Criterion] = []
    given_values = (sex, modality, bodypart, manufacturer, condition, segmentation)
    for dimension, given in zip(DIMENSIONS, given_values, strict=True):
        for value in given or []:
            values = [v.strip() for v in value.split(",") if v.strip()]
            if not values:
                raise FhirError(400, f"{dimension} needs a value", code="invalid", expression=dimension)
            criteria.append((dimension, values))
    return JSONResponse(_catalogue(request).counts(criteria, stratify))
