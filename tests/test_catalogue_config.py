"""Catalogue configuration (settings over file over defaults, refusals at start-up) and disclosure rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_bridge import Settings
from fhir_bridge.catalogue.config import EHDS, GDPR, CatalogueConfig
from fhir_bridge.catalogue.dcat import DescriptionBuilder
from fhir_bridge.catalogue.disclosure import disclosed, disclosed_values, typical_age_range
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.services import Services


def catalogue_config(settings: Settings) -> CatalogueConfig:
    """The catalogue configuration the composition root builds from ``settings``."""
    return Services.from_settings(settings).catalogue_config


def _file(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "catalogue.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_defaults_describe_a_valid_dataset() -> None:
    config = catalogue_config(Settings())
    assert config.access_rights == "NON_PUBLIC"
    assert config.applicable_legislation == [GDPR, EHDS]
    assert config.keywords and config.title and config.description


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(tmp_path, {"title": "from the file", "version": "2.0.0", "keywords": ["file"]})
    monkeypatch.setenv("FHIR_BRIDGE_CATALOGUE_FILE", str(path))
    monkeypatch.setenv("FHIR_BRIDGE_CATALOGUE_TITLE", "from the environment")
    monkeypatch.setenv("FHIR_BRIDGE_CATALOGUE_KEYWORDS", '["lung", "CT"]')
    monkeypatch.setenv("FHIR_BRIDGE_CATALOGUE_ACCESS_RIGHTS", "PUBLIC")
    config = catalogue_config(Settings())
    assert config.title == "from the environment"
    assert config.version == "2.0.0"
    assert config.keywords == ["lung", "CT"]
    assert config.access_rights == "PUBLIC"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ({"titel": "typo"}, "titel"),
        ({"access_rights": "OPEN"}, "access_rights"),
        ({"keywords": []}, "keywords"),
    ],
)
def test_a_bad_file_refuses_to_start(tmp_path: Path, content: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        catalogue_config(Settings(catalogue_file=_file(tmp_path, content)))


def test_a_missing_file_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        catalogue_config(Settings(catalogue_file=tmp_path / "absent.json"))


def test_non_iris_and_bad_turtle_refuse_to_start(tmp_path: Path) -> None:
    bad_iri = catalogue_config(Settings(catalogue_file=_file(tmp_path, {"concepts": {"x|MR": "not an iri"}})))
    with pytest.raises(ConfigurationError, match="not an absolute IRI"):
        DescriptionBuilder(bad_iri, 10)
    (tmp_path / "extra.ttl").write_text("<#dataset> a .", encoding="utf-8")
    bad_turtle = catalogue_config(Settings(catalogue_file=_file(tmp_path, {"extra_turtle": "extra.ttl"})))
    with pytest.raises(ConfigurationError, match="not valid Turtle"):
        DescriptionBuilder(bad_turtle, 10)


def test_disclosure_rule() -> None:
    assert disclosed(10, 10) == 10
    assert disclosed(9, 10) is None
    assert disclosed(0, 10) is None  # "none" is not told apart from "a few"
    assert disclosed_values({"MR": 12, "CT": 3, "US": 10}, 10) == ["MR", "US"]


def test_typical_age_range_never_exposes_the_extremes() -> None:
    ages = {18: 1, 34: 4, 41: 5, 52: 6, 67: 4, 99: 1}
    # 3rd youngest: 34 -> 30; 3rd oldest: 67 -> 70 (the 18- and 99-year-old stay hidden)
    assert typical_age_range(ages, 3) == (30, 70)
    assert typical_age_range({60: 3}, 3) == (60, 60)
    assert typical_age_range({60: 2}, 3) is None
    assert typical_age_range({40: 3, 70: 2}, 3) == (40, 40)  # three at 40 on both sides
    assert typical_age_range({40: 2, 70: 2}, 3) is None  # the bounds would cross: not enough people
