"""Federated search answers: per dataset, the counts that may leave the node.

The small-count rule is the catalogue's (``catalogue.disclosure.disclosed``): a count is published only
when it rests on at least the threshold of individuals. A dataset is listed only when both its counts
pass: its subjects, and the distinct subjects its studies are about. Otherwise it is left out, so that an
absent dataset never tells "none" from "a few". With ``epsilon`` set, the published counts carry Laplace
noise seeded by the question (``obfuscation``).

The node holds one dataset: the catalogue's (its identifier, title and description).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_bridge.catalogue.config import CatalogueConfig
from fhir_bridge.catalogue.disclosure import disclosed
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.eucaim.concepts import ConceptMaps, Concepts
from fhir_bridge.eucaim.counting import count
from fhir_bridge.eucaim.criteria import Criterion, canonical
from fhir_bridge.eucaim.obfuscation import obfuscated
from fhir_bridge.store.store import Store

DEFAULT_DATASET_ID = "fhir-bridge"


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    description: str

    @classmethod
    def of(cls, config: CatalogueConfig) -> Dataset:
        return cls(config.dataset_id or DEFAULT_DATASET_ID, config.title, config.description)


@dataclass(frozen=True)
class Collection:
    """One dataset's published counts, in the shape Focus's EUCAIM backends pass on to the central UI."""

    dataset: Dataset
    subjects_count: int
    studies_count: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.dataset.id,
            "name": self.dataset.name,
            "description": self.dataset.description,
            "subjects_count": self.subjects_count,
            "studies_count": self.studies_count,
        }


def totals(collections: Sequence[Collection]) -> dict[str, int]:
    return {
        "subjects_count": sum(c.subjects_count for c in collections),
        "studies_count": sum(c.studies_count for c in collections),
    }


class FederatedSearch:
    """Answers EUCAIM criteria from one store; thread-safe."""

    def __init__(
        self, store: Store, dataset: Dataset, threshold: int, epsilon: float | None, secret: bytes | None
    ) -> None:
        if epsilon is not None and not secret:
            raise ConfigurationError(
                "FHIR_BRIDGE_EUCAIM_EPSILON needs the site secret (FHIR_BRIDGE_PSEUDONYM_KEY[_FILE]) to seed the noise"
            )
        self.store = store
        self.dataset = dataset
        self.threshold = threshold
        self.epsilon = epsilon
        self.secret = secret
        self.concept_maps = ConceptMaps(store)

    def snapshot(self) -> tuple[int, Concepts]:
        """The commit answers are pinned to, and the concepts in force at it."""
        seq = self.store.last_seq()
        return seq, self.concept_maps.current(seq)

    def collections(self, criteria: Sequence[Criterion], concepts: Concepts, at_seq: int) -> list[Collection]:
        counts = count(self.store, concepts, criteria, at_seq)
        if (
            disclosed(counts.subjects, self.threshold) is None
            or disclosed(counts.study_subjects, self.threshold) is None
        ):
            return []
        subjects, studies = counts.subjects, counts.studies
        if self.epsilon is not None and self.secret:
            question = f"{self.dataset.id}\x00{canonical(criteria)}"
            subjects = obfuscated(subjects, self.secret, f"{question}\x00subjects", self.epsilon)
            studies = obfuscated(studies, self.secret, f"{question}\x00studies", self.epsilon)
        return [Collection(self.dataset, subjects, studies)]
