"""GET /catalogue: the DCAT-AP description, read back as RDF, for a known data set (tests/catalogue_data.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.compare import isomorphic
from rdflib.term import Node

from fhir_bridge import Settings, create_app
from fhir_bridge.catalogue.dcat import DCAT, DCATAP, DCT, EUCAIM, FOAF, HEALTHDCATAP, SKOS, VCARD
from tests.catalogue_data import BREAST, BREAST_CANCER, PROSTATE, transaction
from tests.conftest import TEST_PSEUDONYM_KEY

DATASET = URIRef("https://data.example-hospital.eu/datasets/breast-prostate-mri")
EUCAIM_MRI = "https://hyperontology.eucaim.cancerimage.eu/#IMG1000022"
EUCAIM_SIEMENS = "https://hyperontology.eucaim.cancerimage.eu/#IMG1000044"
RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")  # plain Namespaces: pytest's collection
XSD = Namespace("http://www.w3.org/2001/XMLSchema#")  # warns on rdflib's closed ones
GDPR = URIRef("http://data.europa.eu/eli/reg/2016/679/oj")
HEAL = URIRef("http://publications.europa.eu/resource/authority/data-theme/HEAL")


def _settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    extra = tmp_path / "extra.ttl"
    extra.write_text(
        "@prefix eucaim: <https://hyperontology.eucaim.cancerimage.eu/#> .\n"
        "<#dataset> eucaim:interoperabilityLevel eucaim:SPEC1000011 .\n",
        encoding="utf-8",
    )
    file = tmp_path / "catalogue.json"
    file.write_text(
        json.dumps(
            {
                "title": "overridden by the setting",
                "description": "Breast and prostate MRI of Example Hospital, pseudonymised.",
                "contact_url": "https://example-hospital.eu/research/contact",
                "access_condition": "REMOTE_PROCESSING",
                "concepts": {
                    "http://dicom.nema.org/resources/ontology/DCM|MR": EUCAIM_MRI,
                    "manufacturer|Siemens": EUCAIM_SIEMENS,
                },
                "extra_turtle": "extra.ttl",
            }
        ),
        encoding="utf-8",
    )
    values: dict[str, object] = {
        "database_url": database_url,
        "pseudonym_key": TEST_PSEUDONYM_KEY,
        "catalogue_file": file,
        "catalogue_title": "Breast and prostate MRI",
        "catalogue_publisher_name": "Example Hospital",
        "catalogue_publisher_url": "https://example-hospital.eu",
        "catalogue_contact_email": "imaging-data@example-hospital.eu",
        "catalogue_dataset_id": str(DATASET),
        "catalogue_version": "1.2.0",
        "catalogue_keywords": ["breast cancer", "prostate cancer", "MRI"],
        "catalogue_access_rights": "RESTRICTED",
        "catalogue_min_count": 3,
        "catalogue_cache_seconds": 0,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def catalogue_client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(_settings(database_url, tmp_path))
    with TestClient(app, base_url="http://node.example") as client:
        assert client.post("/fhir", json=transaction()).status_code == 200
        yield client
    app.state.services.close()


def _graph(client: TestClient, accept: str = "application/ld+json") -> Graph:
    response = client.get("/catalogue", headers={"Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == accept
    syntax = {"application/ld+json": "json-ld", "text/turtle": "turtle", "application/rdf+xml": "xml"}[accept]
    return Graph().parse(data=response.content, format=syntax)


def _one(graph: Graph, subject: Node, predicate: URIRef) -> Node:
    values = list(graph.objects(subject, predicate))
    assert len(values) == 1, f"{predicate}: {values}"
    return values[0]


def _labels(graph: Graph, subject: Node, predicate: URIRef) -> set[str]:
    """IRIs as text, skos:Concepts as their notation or label."""
    found = set()
    for value in graph.objects(subject, predicate):
        if isinstance(value, URIRef):
            found.add(str(value))
        else:
            found.add(str(graph.value(value, SKOS.notation) or graph.value(value, SKOS.prefLabel)))
    return found


def test_every_mandatory_property_is_present_with_the_store_values(catalogue_client: TestClient) -> None:
    graph = _graph(catalogue_client)
    catalogue = URIRef("http://node.example/catalogue")
    assert (catalogue, RDF.type, DCAT.Catalog) in graph
    assert (catalogue, DCAT.dataset, DATASET) in graph
    assert (DATASET, RDF.type, DCAT.Dataset) in graph
    assert _one(graph, catalogue, DCT.title)
    assert _one(graph, catalogue, DCT.description)
    assert (catalogue, DCATAP.applicableLegislation, GDPR) in graph

    # configured
    assert _one(graph, DATASET, DCT.identifier) == Literal(str(DATASET))
    assert _one(graph, DATASET, DCT.title) == Literal("Breast and prostate MRI", lang="en")
    assert "pseudonymised" in _one(graph, DATASET, DCT.description)
    assert _one(graph, DATASET, DCAT.version) == Literal("1.2.0")
    publisher = _one(graph, DATASET, DCT.publisher)
    assert _one(graph, publisher, FOAF.name) == Literal("Example Hospital", lang="en")
    contact = _one(graph, DATASET, DCAT.contactPoint)
    assert _one(graph, contact, VCARD.hasEmail) == URIRef("mailto:imaging-data@example-hospital.eu")
    assert _one(graph, DATASET, DCT.accessRights) == URIRef(
        "http://publications.europa.eu/resource/authority/access-right/RESTRICTED"
    )
    assert GDPR in set(graph.objects(DATASET, DCATAP.applicableLegislation))
    assert _one(graph, DATASET, DCAT.theme) == HEAL
    assert {str(k) for k in graph.objects(DATASET, DCAT.keyword)} == {"breast cancer", "prostate cancer", "MRI"}
    assert _one(graph, DATASET, EUCAIM.interoperabilityLevel) == EUCAIM.SPEC1000011  # the extra Turtle

    # computed from the store
    assert _one(graph, DATASET, HEALTHDCATAP.numberOfUniqueIndividuals) == Literal(12, datatype=XSD.nonNegativeInteger)
    assert _one(graph, DATASET, HEALTHDCATAP.numberOfRecords) == Literal(13, datatype=XSD.nonNegativeInteger)
    assert _labels(graph, DATASET, EUCAIM.hasImageModality) == {EUCAIM_MRI, "CT"}  # US: 1 subject
    assert _labels(graph, DATASET, EUCAIM.hasImageBodyPart) == {
        f"http://snomed.info/id/{BREAST}",
        f"http://snomed.info/id/{PROSTATE}",
    }  # chest: 2 subjects, abdomen: 1
    assert _labels(graph, DATASET, EUCAIM.hasEquipmentManufacturer) == {EUCAIM_SIEMENS, "GE MEDICAL SYSTEMS"}
    assert _labels(graph, DATASET, EUCAIM.hasBirthSex) == {str(EUCAIM.COM1001370), str(EUCAIM.COM1001366)}
    assert _labels(graph, DATASET, EUCAIM.hasCondition) == {f"http://snomed.info/id/{BREAST_CANCER}"}
    assert _one(graph, DATASET, HEALTHDCATAP.minTypicalAge).toPython() == 50
    assert _one(graph, DATASET, HEALTHDCATAP.maxTypicalAge).toPython() == 65  # the oldest (68) is not exposed
    period = _one(graph, DATASET, DCT.temporal)
    assert (period, RDF.type, DCT.PeriodOfTime) in graph
    assert _one(graph, period, DCAT.startDate) == Literal("2019-02", datatype=XSD.gYearMonth)
    assert _one(graph, period, DCAT.endDate) == Literal("2023-11", datatype=XSD.gYearMonth)
    assert _one(graph, DATASET, DCT.modified).datatype == XSD.dateTime

    # the FHIR API as the distribution's access service
    distribution = _one(graph, DATASET, DCAT.distribution)
    assert (distribution, RDF.type, DCAT.Distribution) in graph
    assert _one(graph, distribution, DCAT.accessURL) == URIRef("http://node.example/fhir")
    assert GDPR in set(graph.objects(distribution, DCATAP.applicableLegislation))
    assert _one(graph, distribution, DCT.rights) == URIRef(
        "https://eucaim.github.io/eucaim_dcat_ap/releases/controlled-vocabularies/access-conditions/#REMOTE_PROCESSING"
    )
    service = _one(graph, distribution, DCAT.accessService)
    assert (service, RDF.type, DCAT.DataService) in graph
    assert _one(graph, service, DCAT.endpointURL) == URIRef("http://node.example/fhir")
    assert _one(graph, service, DCT.conformsTo) == URIRef("http://hl7.org/fhir/R4")


def test_json_ld_turtle_and_rdf_xml_say_the_same(catalogue_client: TestClient) -> None:
    json_ld = _graph(catalogue_client, "application/ld+json")
    assert isomorphic(json_ld, _graph(catalogue_client, "text/turtle"))
    assert isomorphic(json_ld, _graph(catalogue_client, "application/rdf+xml"))
    by_format = catalogue_client.get("/catalogue", params={"_format": "ttl"})
    assert by_format.headers["content-type"].startswith("text/turtle")
    assert isomorphic(json_ld, Graph().parse(data=by_format.content, format="turtle"))


NEGOTIATED = [
    (None, "application/ld+json"),
    ("*/*", "application/ld+json"),
    ("application/json", "application/ld+json"),
    ("text/*", "text/turtle"),
    ("text/turtle;q=0.5, application/ld+json;q=0.9", "application/ld+json"),
    ("application/ld+json;q=0, */*;q=0.1", "text/turtle"),
    ("application/n-triples", "application/n-triples"),
]


def test_content_negotiation(catalogue_client: TestClient) -> None:
    for accept, expected in NEGOTIATED:
        headers = {"Accept": accept} if accept is not None else {}
        response = catalogue_client.get("/catalogue", headers=headers)
        assert response.status_code == 200, accept
        assert response.headers["content-type"].split(";")[0] == expected, accept
        assert response.headers["vary"] == "Accept"


def test_unacceptable_formats_get_406(catalogue_client: TestClient) -> None:
    for accept in ("text/html", "application/fhir+json", "image/png, text/plain;q=0.5"):
        response = catalogue_client.get("/catalogue", headers={"Accept": accept})
        assert response.status_code == 406, accept
        assert "text/turtle" in response.json()["issue"][0]["diagnostics"]
    assert catalogue_client.get("/catalogue", params={"_format": "csv"}).status_code == 406


def test_an_unchanged_description_is_not_sent_again(catalogue_client: TestClient) -> None:
    first = catalogue_client.get("/catalogue")
    again = catalogue_client.get("/catalogue", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    catalogue_client.put("/fhir/Patient/p12", json={"resourceType": "Patient", "id": "p12", "gender": "female"})
    changed = catalogue_client.get("/catalogue", headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200
    assert changed.headers["etag"] != first.headers["etag"]


def test_writes_show_at_once_without_a_cache_window(catalogue_client: TestClient) -> None:
    def individuals() -> int:
        return _one(_graph(catalogue_client), DATASET, HEALTHDCATAP.numberOfUniqueIndividuals).toPython()

    assert individuals() == 12
    catalogue_client.put("/fhir/Patient/p12", json={"resourceType": "Patient", "id": "p12"})
    assert individuals() == 12  # no imaging study: not an individual of the imaging dataset
    study = {
        "resourceType": "ImagingStudy",
        "id": "s12",
        "status": "available",
        "subject": {"reference": "Patient/p12"},
    }
    catalogue_client.put("/fhir/ImagingStudy/s12", json=study)
    assert individuals() == 13
    catalogue_client.delete("/fhir/ImagingStudy/s12")
    assert individuals() == 12


def test_a_description_is_reused_within_the_cache_window(database_url: str, tmp_path: Path) -> None:
    app = create_app(_settings(database_url, tmp_path, catalogue_cache_seconds=3600))
    with TestClient(app, base_url="http://node.example") as client:
        client.post("/fhir", json=transaction())
        before = client.get("/catalogue").content
        client.put("/fhir/Patient/p12", json={"resourceType": "Patient", "id": "p12"})
        assert client.get("/catalogue").content == before  # served from the cache, no recomputation
    app.state.services.close()


def test_small_counts_and_values_are_left_out_at_the_default_threshold(database_url: str, tmp_path: Path) -> None:
    app = create_app(_settings(database_url, tmp_path, catalogue_min_count=10))
    with TestClient(app, base_url="http://node.example") as client:
        client.post("/fhir", json=transaction())
        graph = _graph(client)
        assert graph.value(DATASET, HEALTHDCATAP.numberOfUniqueIndividuals).toPython() == 12
        assert graph.value(DATASET, HEALTHDCATAP.numberOfRecords).toPython() == 13  # 12 subjects
        assert _labels(graph, DATASET, EUCAIM.hasImageModality) == {EUCAIM_MRI}  # MR: 10 subjects
        for sparse in (EUCAIM.hasImageBodyPart, EUCAIM.hasEquipmentManufacturer, EUCAIM.hasBirthSex):
            assert list(graph.objects(DATASET, sparse)) == [], sparse  # at most 8 subjects each
        assert list(graph.objects(DATASET, EUCAIM.hasCondition)) == []
        assert graph.value(DATASET, HEALTHDCATAP.minTypicalAge) is None  # 12 < 2 x 10: no protected range

        for i in range(3, 12):  # leave 3 patients (and their 4 studies)
            client.delete(f"/fhir/Condition/c{i}")
            client.delete(f"/fhir/ImagingStudy/s{i}")
            client.delete(f"/fhir/Patient/p{i}")
        graph = _graph(client)
        for count in (HEALTHDCATAP.numberOfUniqueIndividuals, HEALTHDCATAP.numberOfRecords, DCT.temporal):
            assert graph.value(DATASET, count) is None, count
        assert list(graph.objects(DATASET, EUCAIM.hasImageModality)) == []
        assert graph.value(DATASET, DCAT.distribution) is not None  # the description itself stays
    app.state.services.close()


def test_an_empty_store_is_described_without_counts(database_url: str, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app, base_url="http://node.example") as client:
        graph = _graph(client, "text/turtle")
    app.state.services.close()
    dataset = URIRef("http://node.example/catalogue#dataset")
    assert (dataset, RDF.type, DCAT.Dataset) in graph
    assert graph.value(dataset, DCT.identifier) == Literal(str(dataset))
    assert graph.value(dataset, HEALTHDCATAP.numberOfUniqueIndividuals) is None
    assert graph.value(dataset, DCAT.version) == Literal("0")


def test_urls_follow_the_mounting_and_the_public_base_url(database_url: str) -> None:
    """/catalogue is the app's, not a resource type, also with the FHIR base at the app's root."""
    for overrides, catalogue, endpoint in (
        ({"fhir_path": ""}, "http://node.example/catalogue", "http://node.example"),
        ({"public_base_url": "https://imaging.example/fhir"}, "https://imaging.example/catalogue", None),
    ):
        settings = Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, **overrides)
        app = create_app(settings)
        with TestClient(app, base_url="http://node.example") as client:
            graph = _graph(client, "text/turtle")
        app.state.services.close()
        assert (URIRef(catalogue), RDF.type, DCAT.Catalog) in graph
        service = graph.value(URIRef(f"{catalogue}#fhir"), DCAT.accessService)
        assert graph.value(service, DCAT.endpointURL) == URIRef(endpoint or "https://imaging.example/fhir")
