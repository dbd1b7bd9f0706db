"""What the catalogue says that the store cannot know: titles, publisher, contact, legal facts.

Values come from ``FHIR_BRIDGE_CATALOGUE_*`` settings, else from the JSON file named by
``FHIR_BRIDGE_CATALOGUE_FILE`` (which may also hold the fields that have no environment variable:
``concepts``, ``extra_turtle``, ...), else from the defaults here; ``Services.catalogue_config``
passes the settings in. Bad configuration stops the service at start-up rather than producing a
malformed description on the first harvest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fhir_bridge.errors import ConfigurationError

GDPR = "http://data.europa.eu/eli/reg/2016/679/oj"
EHDS = "http://data.europa.eu/eli/reg/2025/327/oj"

AccessRights = Literal["PUBLIC", "RESTRICTED", "NON_PUBLIC"]
AccessCondition = Literal["DOWNLOAD", "IN_SITU_PROCESSING", "REMOTE_PROCESSING"]


class CatalogueConfig(BaseModel):
    """The descriptive part of the catalogue; every field is optional in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = "fhir-bridge imaging dataset"
    description: str = "DICOM imaging studies and related clinical data of one hospital, as FHIR R4 resources."
    catalogue_title: str | None = Field(None, description="dcat:Catalog title (default: the publisher's catalogue)")
    language: str = Field("en", description="Language tag of the titles, descriptions and keywords")
    publisher_name: str = "fhir-bridge node"
    publisher_url: str | None = None
    contact_email: str | None = None
    contact_url: str | None = None
    dataset_id: str | None = Field(None, description="dct:identifier; an absolute IRI also names the dataset")
    version: str | None = Field(None, description="dcat:version (default: the date of the last write, YYYY.MM.DD)")
    keywords: list[str] = Field(default_factory=lambda: ["cancer imaging", "DICOM", "FHIR"], min_length=1)
    access_rights: AccessRights = "NON_PUBLIC"
    applicable_legislation: list[str] = Field(default_factory=lambda: [GDPR, EHDS], min_length=1)
    access_condition: AccessCondition | None = Field(
        None, description="EUCAIM access condition of the distribution (dct:rights)"
    )
    concepts: dict[str, str] = Field(
        default_factory=dict,
        description="'system|code' (or 'manufacturer|Name') -> concept IRI, e.g. of the EUCAIM hyper-ontology",
    )
    extra_turtle: Path | None = Field(
        None, description="Turtle merged into the description; relative IRIs resolve against /catalogue"
    )

    def placeholders(self) -> list[str]:
        """The fields still at the shipped placeholder values, which no site should publish: title, publisher."""
        fields = type(self).model_fields
        return [name for name in ("title", "publisher_name") if getattr(self, name) == fields[name].default]


def load_catalogue_config(path: Path | None, overrides: Mapping[str, object]) -> CatalogueConfig:
    """``overrides`` (CatalogueConfig fields, from the settings) over the JSON file ``path`` over the
    defaults; ConfigurationError says what is wrong."""
    values: dict[str, object] = {}
    if path is not None:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigurationError(f"cannot read the catalogue file {path}: {error.strerror}") from None
        except ValueError as error:
            raise ConfigurationError(f"the catalogue file {path} is not JSON: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError(f"the catalogue file {path} must hold a JSON object")
        values.update(loaded)
        if isinstance(values.get("extra_turtle"), str):  # relative to the file, not to the working directory
            values["extra_turtle"] = path.parent / str(values["extra_turtle"])
    values.update(overrides)
    try:
        return CatalogueConfig.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise ConfigurationError(f"invalid catalogue configuration: {problems}") from None
