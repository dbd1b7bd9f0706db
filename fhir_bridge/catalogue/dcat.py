"""The node's DCAT-AP description (EUCAIM DCAT-AP v2 over HealthDCAT-AP / DCAT-AP 3) as an RDF graph.

Sources of the property IRIs (EUCAIM DCAT-AP v2.0, github.com/EUCAIM/eucaim_dcat_ap,
``releases/v2.0/Dataset.md``, ``Distribution.md``, ``Catalogue.md`` and the examples' prefixes):

- ``dcat:`` http://www.w3.org/ns/dcat# -- ``Catalog``, ``Dataset``, ``Distribution``, ``DataService``,
  ``dataset``, ``service``, ``distribution``, ``accessURL``, ``accessService``, ``endpointURL``,
  ``endpointDescription``, ``servesDataset``, ``mediaType``, ``contactPoint``, ``theme``,
  ``themeTaxonomy``, ``keyword``, ``version``, ``startDate``, ``endDate``
- ``dct:`` http://purl.org/dc/terms/ -- ``identifier``, ``title``, ``description``, ``publisher``,
  ``accessRights``, ``rights``, ``conformsTo``, ``temporal`` (a ``PeriodOfTime``), ``modified``
- ``dcatap:`` http://data.europa.eu/r5r/ -- ``applicableLegislation`` (ELI IRIs: GDPR
  http://data.europa.eu/eli/reg/2016/679/oj, EHDS http://data.europa.eu/eli/reg/2025/327/oj)
- ``healthdcatap:`` https://w3id.org/healthdcat-ap# -- ``numberOfUniqueIndividuals``,
  ``numberOfRecords`` (EUCAIM: the number of imaging studies), ``minTypicalAge``, ``maxTypicalAge``
  (all ``xsd:nonNegativeInteger``)
- ``eucaim:`` https://hyperontology.eucaim.cancerimage.eu/# -- ``hasImageModality``,
  ``hasImageBodyPart``, ``hasEquipmentManufacturer``, ``hasBirthSex``, ``hasCondition``, and the
  annotation properties ``hasAnnotationLabel`` (segmented structures), ``hasAlgorithmType`` (the
  segmentation method) and ``nbrOfSegmentations`` (the number of segmented studies); birth sex
  female ``eucaim:COM1001370`` and male ``eucaim:COM1001366`` (EUCAIM example and mappings)
- ``foaf:`` http://xmlns.com/foaf/0.1/ ``name``, ``homepage``; ``vcard:`` http://www.w3.org/2006/vcard/ns#
  ``Kind``, ``fn``, ``hasEmail``, ``hasURL``; ``cv:`` http://data.europa.eu/m8g/ ``contactPoint``,
  ``ContactPoint``, ``email``, ``contactPage`` (the publisher's contact point)
- controlled vocabularies: data theme ``HEAL`` http://publications.europa.eu/resource/authority/data-theme/HEAL,
  access rights http://publications.europa.eu/resource/authority/access-right/{PUBLIC,RESTRICTED,NON_PUBLIC},
  EUCAIM access conditions https://eucaim.github.io/eucaim_dcat_ap/releases/controlled-vocabularies/access-conditions/#...
- the FHIR API conforms to FHIR R4, http://hl7.org/fhir/R4

The EUCAIM properties expect concepts of the EUCAIM hyper-ontology. The store holds standard codes
(DICOM modalities, SNOMED CT body sites, ...), so a value is published as the IRI the operator maps
it to (``concepts`` in the catalogue file), else as its standard IRI (SNOMED CT:
http://snomed.info/id/{code}), else as a ``skos:Concept`` with ``skos:notation``, ``skos:inScheme``
(its code system) and the ``skos:prefLabel`` DCAT-AP 3.0.1 requires of every concept (a DICOM code's
meaning from the DICOM dictionary, else the code itself) -- never as an invented IRI. Manufacturers,
free text in DICOM, become a ``skos:Concept`` with a ``skos:prefLabel`` unless mapped.

Contact points: EUCAIM DCAT-AP v2 asks for ``cv:contactPoint`` (a ``cv:ContactPoint``), DCAT-AP and
HealthDCAT-AP for ``dcat:contactPoint`` (a ``vcard:Kind``); the dataset and the publisher carry both.

``healthdcatap:numberOfUniqueIndividuals`` counts the subjects with at least one imaging study, the
same as the ``subjects`` of ``/catalogue/counts`` without criteria (``numberOfRecords``: the studies):
the dataset is the imaging data, and a Patient known from clinical data alone is not in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from pydicom.sr._concepts_dict import concepts as dicom_concepts
from rdflib import RDF, XSD, BNode, Graph, Literal, Namespace, URIRef
from rdflib.term import Node

from fhir_bridge.catalogue.config import CatalogueConfig
from fhir_bridge.catalogue.disclosure import disclosed, disclosed_values, typical_age_range
from fhir_bridge.catalogue.statistics import StoreStatistics, Value
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.search.values import normalize_string

DCAT = Namespace("http://www.w3.org/ns/dcat#")
DCT = Namespace("http://purl.org/dc/terms/")
DCATAP = Namespace("http://data.europa.eu/r5r/")
HEALTHDCATAP = Namespace("https://w3id.org/healthdcat-ap#")
EUCAIM = Namespace("https://hyperontology.eucaim.cancerimage.eu/#")
FOAF = Namespace("http://xmlns.com/foaf/0.1/")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
CV = Namespace("http://data.europa.eu/m8g/")
SKOS = Namespace("http://www.w3.org/2004/02/skos/core#")
PREFIXES = {
    "dcat": DCAT,
    "dct": DCT,
    "dcatap": DCATAP,
    "healthdcatap": HEALTHDCATAP,
    "eucaim": EUCAIM,
    "foaf": FOAF,
    "vcard": VCARD,
    "cv": CV,
    "skos": SKOS,
    "xsd": XSD,
}

HEAL = URIRef("http://publications.europa.eu/resource/authority/data-theme/HEAL")
DATA_THEMES = URIRef("http://publications.europa.eu/resource/authority/data-theme")
ACCESS_RIGHT = "http://publications.europa.eu/resource/authority/access-right/"
ACCESS_CONDITION = "https://eucaim.github.io/eucaim_dcat_ap/releases/controlled-vocabularies/access-conditions/#"
FHIR_R4 = URIRef("http://hl7.org/fhir/R4")
FHIR_JSON = URIRef("https://www.iana.org/assignments/media-types/application/fhir+json")
SNOMED = "http://snomed.info/sct"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ADMINISTRATIVE_GENDER = "http://hl7.org/fhir/administrative-gender"
DEFAULT_CONCEPTS = {
    f"{ADMINISTRATIVE_GENDER}|female": str(EUCAIM.COM1001370),
    f"{ADMINISTRATIVE_GENDER}|male": str(EUCAIM.COM1001366),
}
_IRI = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:)[^\s<>\"{}|\\^`]+$")


@dataclass(frozen=True)
class Location:
    """Where the node is, as the client sees it."""

    catalogue_url: str  # .../catalogue: the dcat:Catalog's IRI and the base of relative IRIs
    fhir_base: str


def _instant(micros: int) -> Literal:
    moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return Literal(moment.isoformat(timespec="seconds").replace("+00:00", "Z"), datatype=XSD.dateTime)


def _year_month(micros: int) -> Literal:
    moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return Literal(f"{moment.year:04d}-{moment.month:02d}", datatype=XSD.gYearMonth)


def _count(value: int) -> Literal:
    return Literal(value, datatype=XSD.nonNegativeInteger)


@cache
def _dicom_meanings() -> dict[str, str]:
    """Code meanings of the DICOM Controlled Terminology (DCM), from pydicom's copy of PS3.16."""
    entries: dict[str, dict[str, tuple[str, list[int]]]] = dicom_concepts["DCM"]  # type: ignore[assignment]
    return {code: meaning for entry in entries.values() for code, (meaning, _cids) in entry.items()}


class DescriptionBuilder:
    """Builds the graph of one description; small counts are left out (see ``disclosure``)."""

    def __init__(self, config: CatalogueConfig, threshold: int) -> None:
        validate_iris(config)
        self.config = config
        self.threshold = threshold
        self.concepts = DEFAULT_CONCEPTS | config.concepts
        self._makers = {
            normalize_string(key.partition("|")[2]): iri
            for key, iri in config.concepts.items()
            if key.startswith("manufacturer|")
        }
        self.extra = _read_extra(config.extra_turtle)

    def build(self, statistics: StoreStatistics, where: Location) -> Graph:
        graph = Graph(bind_namespaces="none")
        for prefix, namespace in PREFIXES.items():
            graph.bind(prefix, namespace)
        catalogue = URIRef(where.catalogue_url)
        dataset = self._dataset_iri(where)
        publisher = URIRef(f"{where.catalogue_url}#publisher")
        service = URIRef(f"{where.catalogue_url}#fhir-api")
        counts_service = URIRef(f"{where.catalogue_url}#counts")
        self._catalogue(graph, catalogue, statistics)
        graph.add((catalogue, DCT.publisher, publisher))
        graph.add((catalogue, DCAT.dataset, dataset))
        graph.add((catalogue, DCAT.service, service))
        graph.add((catalogue, DCAT.service, counts_service))
        self._publisher(graph, publisher)
        self._dataset(graph, dataset, publisher, statistics)
        for subject in (dataset, publisher):
            self._contact(graph, subject)
        self._distribution(graph, dataset, service, where)
        self._counts_service(graph, counts_service, dataset, where)
        if self.extra is not None:
            self._merge_extra(graph, where, dataset)
        return graph

    def _merge_extra(self, graph: Graph, where: Location, dataset: URIRef) -> None:
        """The operator's Turtle; ``<#dataset>`` names the dataset whatever its configured IRI."""
        extra = Graph().parse(data=self.extra, format="turtle", publicID=where.catalogue_url)
        placeholder = URIRef(f"{where.catalogue_url}#dataset")
        for subject, predicate, value in extra:
            graph.add(
                (dataset if subject == placeholder else subject, predicate, dataset if value == placeholder else value)
            )
        for prefix, namespace in extra.namespaces():
            if prefix and prefix not in PREFIXES:
                graph.bind(prefix, namespace)

    # parts ------------------------------------------------------------------------------------
    def _text(self, text: str) -> Literal:
        return Literal(text, lang=self.config.language)

    def _legislation(self, graph: Graph, subject: Node) -> None:
        for iri in self.config.applicable_legislation:
            graph.add((subject, DCATAP.applicableLegislation, URIRef(iri)))

    def _dataset_iri(self, where: Location) -> URIRef:
        identifier = self.config.dataset_id
        if identifier and identifier.startswith(("http://", "https://")) and _IRI.match(identifier):
            return URIRef(identifier)
        return URIRef(f"{where.catalogue_url}#dataset")

    def _catalogue(self, graph: Graph, catalogue: URIRef, statistics: StoreStatistics) -> None:
        config = self.config
        graph.add((catalogue, RDF.type, DCAT.Catalog))
        graph.add((catalogue, DCT.title, self._text(config.catalogue_title or f"{config.publisher_name} catalogue")))
        graph.add((catalogue, DCT.description, self._text(f"Datasets published by {config.publisher_name}.")))
        graph.add((catalogue, DCAT.themeTaxonomy, DATA_THEMES))
        self._legislation(graph, catalogue)
        if statistics.modified is not None:
            graph.add((catalogue, DCT.modified, _instant(statistics.modified)))
        if config.publisher_url:
            graph.add((catalogue, FOAF.homepage, URIRef(config.publisher_url)))

    def _publisher(self, graph: Graph, publisher: URIRef) -> None:
        config = self.config
        graph.add((publisher, RDF.type, FOAF.Agent))
        graph.add((publisher, FOAF.name, self._text(config.publisher_name)))
        if config.publisher_url:
            graph.add((publisher, FOAF.homepage, URIRef(config.publisher_url)))

    def _dataset(self, graph: Graph, dataset: URIRef, publisher: URIRef, statistics: StoreStatistics) -> None:
        config = self.config
        graph.add((dataset, RDF.type, DCAT.Dataset))
        graph.add((dataset, DCT.identifier, Literal(config.dataset_id or str(dataset))))
        graph.add((dataset, DCT.title, self._text(config.title)))
        graph.add((dataset, DCT.description, self._text(config.description)))
        graph.add((dataset, DCAT.version, Literal(config.version or _calendar_version(statistics.modified))))
        graph.add((dataset, DCT.publisher, publisher))
        graph.add((dataset, DCAT.theme, HEAL))
        graph.add((dataset, DCT.accessRights, URIRef(ACCESS_RIGHT + config.access_rights)))
        self._legislation(graph, dataset)
        for keyword in config.keywords:
            graph.add((dataset, DCAT.keyword, self._text(keyword)))
        if statistics.modified is not None:
            graph.add((dataset, DCT.modified, _instant(statistics.modified)))
        self._population(graph, dataset, statistics)
        self._imaging(graph, dataset, statistics)

    def _contact(self, graph: Graph, subject: URIRef) -> None:
        """The contact point of ``subject`` (the dataset, the publisher) as both EUCAIM and DCAT-AP want it."""
        config = self.config
        if not (config.contact_email or config.contact_url):
            return
        kind = BNode()  # DCAT-AP / HealthDCAT-AP: dcat:contactPoint, a vcard:Kind
        graph.add((subject, DCAT.contactPoint, kind))
        graph.add((kind, RDF.type, VCARD.Kind))
        graph.add((kind, VCARD.fn, Literal(config.publisher_name)))
        point = BNode()  # EUCAIM DCAT-AP v2: cv:contactPoint, a cv:ContactPoint
        graph.add((subject, CV.contactPoint, point))
        graph.add((point, RDF.type, CV.ContactPoint))
        if config.contact_email:
            graph.add((kind, VCARD.hasEmail, URIRef(f"mailto:{config.contact_email}")))
            graph.add((point, CV.email, Literal(config.contact_email)))
        if config.contact_url:
            graph.add((kind, VCARD.hasURL, URIRef(config.contact_url)))
            graph.add((point, CV.contactPage, URIRef(config.contact_url)))

    def _population(self, graph: Graph, dataset: URIRef, statistics: StoreStatistics) -> None:
        # the subjects with imaging studies, as /catalogue/counts counts them (see the module docstring)
        individuals = disclosed(statistics.study_subjects, self.threshold)
        if individuals is not None:
            graph.add((dataset, HEALTHDCATAP.numberOfUniqueIndividuals, _count(individuals)))
        ages = typical_age_range(statistics.ages, self.threshold)
        if ages is not None:
            graph.add((dataset, HEALTHDCATAP.minTypicalAge, _count(ages[0])))
            graph.add((dataset, HEALTHDCATAP.maxTypicalAge, _count(ages[1])))
        sexes = {Value(v.system or ADMINISTRATIVE_GENDER, v.code): n for v, n in statistics.sexes.items()}
        for value in disclosed_values(sexes, self.threshold):
            graph.add((dataset, EUCAIM.hasBirthSex, self._concept(graph, value)))
        for value in disclosed_values(statistics.conditions, self.threshold):
            graph.add((dataset, EUCAIM.hasCondition, self._concept(graph, value)))

    def _imaging(self, graph: Graph, dataset: URIRef, statistics: StoreStatistics) -> None:
        if disclosed(statistics.study_subjects, self.threshold) is not None:
            graph.add((dataset, HEALTHDCATAP.numberOfRecords, _count(statistics.studies)))
            if statistics.started is not None:
                period = BNode()
                graph.add((dataset, DCT.temporal, period))
                graph.add((period, RDF.type, DCT.PeriodOfTime))
                graph.add((period, DCAT.startDate, _year_month(statistics.started[0])))
                graph.add((period, DCAT.endDate, _year_month(statistics.started[1])))
        for value in disclosed_values(statistics.modalities, self.threshold):
            graph.add((dataset, EUCAIM.hasImageModality, self._concept(graph, value)))
        for value in disclosed_values(statistics.body_parts, self.threshold):
            graph.add((dataset, EUCAIM.hasImageBodyPart, self._concept(graph, value)))
        for value in disclosed_values(statistics.manufacturers, self.threshold):
            graph.add((dataset, EUCAIM.hasEquipmentManufacturer, self._manufacturer(graph, value.code)))
        self._annotations(graph, dataset, statistics)

    def _annotations(self, graph: Graph, dataset: URIRef, statistics: StoreStatistics) -> None:
        """Whether and how the studies are annotated (segmentations), under the same small-count rule."""
        subjects, studies = statistics.annotated
        if disclosed(subjects, self.threshold) is not None:
            graph.add((dataset, EUCAIM.nbrOfSegmentations, _count(studies)))
        for value in disclosed_values(statistics.segmentations, self.threshold):
            graph.add((dataset, EUCAIM.hasAnnotationLabel, self._concept(graph, value)))
        for value in disclosed_values(statistics.segmentation_methods, self.threshold):
            graph.add((dataset, EUCAIM.hasAlgorithmType, self._concept(graph, value)))

    def _distribution(self, graph: Graph, dataset: URIRef, service: URIRef, where: Location) -> None:
        distribution = URIRef(f"{where.catalogue_url}#fhir")
        endpoint = URIRef(where.fhir_base)
        graph.add((dataset, DCAT.distribution, distribution))
        graph.add((distribution, RDF.type, DCAT.Distribution))
        graph.add((distribution, DCT.title, self._text("FHIR R4 REST API")))
        graph.add((distribution, DCAT.accessURL, endpoint))
        graph.add((distribution, DCAT.accessService, service))
        graph.add((distribution, DCAT.mediaType, FHIR_JSON))
        graph.add((distribution, DCT.conformsTo, FHIR_R4))
        self._legislation(graph, distribution)
        if self.config.access_condition:
            graph.add((distribution, DCT.rights, URIRef(ACCESS_CONDITION + self.config.access_condition)))
        graph.add((service, RDF.type, DCAT.DataService))
        graph.add((service, DCT.title, self._text("FHIR R4 API")))
        graph.add((service, DCAT.endpointURL, endpoint))
        graph.add((service, DCAT.endpointDescription, URIRef(f"{where.fhir_base}/metadata")))
        graph.add((service, DCT.conformsTo, FHIR_R4))
        graph.add((service, DCAT.servesDataset, dataset))
        graph.add((service, DCT.accessRights, URIRef(ACCESS_RIGHT + self.config.access_rights)))

    def _counts_service(self, graph: Graph, service: URIRef, dataset: URIRef, where: Location) -> None:
        graph.add((service, RDF.type, DCAT.DataService))
        graph.add((service, DCT.title, self._text("Counts of subjects and imaging studies (federated search)")))
        graph.add((service, DCAT.endpointURL, URIRef(f"{where.catalogue_url}/counts")))
        graph.add((service, DCAT.servesDataset, dataset))
        graph.add((service, DCT.accessRights, URIRef(ACCESS_RIGHT + "PUBLIC")))

    # values -----------------------------------------------------------------------------------
    def _concept(self, graph: Graph, value: Value) -> Node:
        mapped = self.concepts.get(f"{value.system or ''}|{value.code}")
        if mapped:
            return URIRef(mapped)
        if value.system == SNOMED and value.code.isdigit():
            return URIRef(f"http://snomed.info/id/{value.code}")
        node = BNode()
        graph.add((node, RDF.type, SKOS.Concept))
        graph.add((node, SKOS.notation, Literal(value.code)))
        label = _dicom_meanings().get(value.code) if value.system == DCM else None
        graph.add((node, SKOS.prefLabel, Literal(label or value.code)))  # DCAT-AP 3.0.1: a concept has a label
        if value.system and _IRI.match(value.system):
            graph.add((node, SKOS.inScheme, URIRef(value.system)))
        return node

    def _manufacturer(self, graph: Graph, name: str) -> Node:
        mapped = self._makers.get(normalize_string(name))
        if mapped:
            return URIRef(mapped)
        node = BNode()
        graph.add((node, RDF.type, SKOS.Concept))
        graph.add((node, SKOS.prefLabel, Literal(name)))
        return node


def _calendar_version(modified: int | None) -> str:
    """Calendar versioning by the last write: the data changes, the version changes."""
    if modified is None:
        return "0"
    moment = datetime.fromtimestamp(modified / 1_000_000, tz=UTC)
    return f"{moment.year}.{moment.month:02d}.{moment.day:02d}"


def _read_extra(path: Path | None) -> str | None:
    """The operator's extra Turtle, checked once at start-up so a typo fails fast."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        Graph().parse(data=text, format="turtle", publicID="https://example.invalid/catalogue")
    except OSError as error:
        raise ConfigurationError(f"cannot read the catalogue's extra Turtle {path}: {error.strerror}") from None
    except Exception as error:  # rdflib raises parser-specific types
        raise ConfigurationError(f"the catalogue's extra Turtle {path} is not valid Turtle: {error}") from None
    return text


def validate_iris(config: CatalogueConfig) -> None:
    """Refuse configured IRIs that are not IRIs (they would end up as broken RDF)."""
    candidates = [*config.applicable_legislation, *config.concepts.values()]
    candidates += [v for v in (config.publisher_url, config.contact_url) if v]
    for iri in candidates:
        if not _IRI.match(iri):
            raise ConfigurationError(f"the catalogue configuration holds {iri!r}, which is not an absolute IRI")
