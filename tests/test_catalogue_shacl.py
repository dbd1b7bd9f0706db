"""GET /catalogue against SEMIC's DCAT-AP 3.0.1 SHACL shapes (tests/data/dcat-ap-3.0.1, CC BY 4.0), with
pyshacl, the validator a catalogue harvester would run; and the points DCAT-AP, HealthDCAT-AP and EUCAIM
DCAT-AP v2 differ on (contact points, labels of concepts, the count of individuals)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pyshacl import validate
from rdflib import Graph, Literal, Namespace, URIRef

from fhir_bridge import Settings, create_app
from fhir_bridge.catalogue.dcat import CV, DCAT, DCT, EUCAIM, HEALTHDCATAP, SKOS, VCARD
from tests.catalogue_data import transaction
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.test_catalogue import DATASET, _settings

SHAPES = Path(__file__).parent / "data" / "dcat-ap-3.0.1" / "shapes.ttl"
RDF = Namespace("http://www.w3.org/1999/02/22-rdf-syntax-ns#")


def _description(client: TestClient) -> Graph:
    response = client.get("/catalogue", headers={"Accept": "text/turtle"})
    assert response.status_code == 200, response.text
    return Graph().parse(data=response.content, format="turtle")


def _conforms(graph: Graph) -> None:
    shapes = Graph().parse(SHAPES, format="turtle")
    conforms, _, report = validate(graph, shacl_graph=shapes, inference="none", advanced=True)
    assert conforms, report


@pytest.fixture
def described(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The fully configured node of tests/test_catalogue.py, its data set loaded, and a Patient without study."""
    app = create_app(_settings(database_url, tmp_path))
    with TestClient(app, base_url="http://node.example") as client:
        assert client.post("/fhir", json=transaction()).status_code == 200
        assert client.put("/fhir/Patient/clinical-only", json={"resourceType": "Patient", "id": "clinical-only"})
        yield client
    app.state.services.close()


def test_the_description_conforms_to_the_dcat_ap_3_0_1_shapes(described: TestClient) -> None:
    _conforms(_description(described))


def test_an_unconfigured_node_and_an_empty_store_conform_too(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app, base_url="http://node.example") as client:
        _conforms(_description(client))
    app.state.services.close()


def test_every_concept_has_a_preferred_label(described: TestClient) -> None:
    """DCAT-AP 3.0.1: skos:Concept needs skos:prefLabel; a DICOM modality gets its meaning from PS3.16."""
    graph = _description(described)
    concepts = set(graph.subjects(RDF.type, SKOS.Concept))
    assert concepts
    assert all(graph.value(c, SKOS.prefLabel) is not None for c in concepts)
    modalities = {
        graph.value(c, SKOS.notation): graph.value(c, SKOS.prefLabel)
        for c in graph.objects(DATASET, EUCAIM.hasImageModality)
    }
    assert modalities[Literal("CT")] == Literal("Computed Tomography")


def test_dataset_and_publisher_carry_both_contact_points(described: TestClient) -> None:
    """EUCAIM DCAT-AP v2 wants cv:contactPoint, DCAT-AP and HealthDCAT-AP dcat:contactPoint (a vcard:Kind)."""
    graph = _description(described)
    publisher = graph.value(DATASET, DCT.publisher)
    for subject in (DATASET, publisher):
        kind = graph.value(subject, DCAT.contactPoint)
        assert (kind, RDF.type, VCARD.Kind) in graph
        assert graph.value(kind, VCARD.hasEmail) == URIRef("mailto:imaging-data@example-hospital.eu")
        assert graph.value(kind, VCARD.hasURL) == URIRef("https://example-hospital.eu/research/contact")
        point = graph.value(subject, CV.contactPoint)
        assert (point, RDF.type, CV.ContactPoint) in graph
        assert graph.value(point, CV.email) == Literal("imaging-data@example-hospital.eu")


def test_number_of_unique_individuals_is_the_subjects_that_counts_reports(described: TestClient) -> None:
    """Both count the subjects with an imaging study: the Patient known from clinical data only is in neither."""
    graph = _description(described)
    counts = described.get("/catalogue/counts").json()
    assert graph.value(DATASET, HEALTHDCATAP.numberOfUniqueIndividuals).toPython() == counts["subjects"] == 12
    assert graph.value(DATASET, HEALTHDCATAP.numberOfRecords).toPython() == counts["studies"] == 13
    assert described.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 13
