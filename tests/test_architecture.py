"""The import contract (pyproject.toml, [tool.importlinter]) holds on the tree, and breaks when it should.

import-linter runs as CI runs it (the ``lint-imports`` command), on the real tree and on a copy of
the package with one bad import added: a cycle, an upward import, an edge touching the store's
tables. Each must be reported by the contract that forbids it, naming the import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts on the ``fhir_bridge`` found in ``root``."""
    environment = {**os.environ, "PYTHONPATH": str(root)}  # the copy wins over the installed package
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _not_python(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "__pycache__" or not (n.endswith(".py") or (Path(directory) / n).is_dir())]


def _copy_with(tmp_path: Path, module: str, source: str) -> Path:
    """A copy of the package's Python files and the contract, with ``source`` appended to ``module``."""
    copy = tmp_path / "tree"
    shutil.copytree(
        ROOT / "fhir_bridge",
        copy / "fhir_bridge",
        ignore=_not_python,
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    path = copy / (module.replace(".", "/") + ".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    for package in path.relative_to(copy).parents:
        if package.name and not (copy / package / "__init__.py").exists():
            (copy / package / "__init__.py").write_text("")
    with path.open("a", encoding="utf-8") as file:
        file.write(f"\n{source}\n")
    return copy


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract", "reported"),
    [
        pytest.param(  # the cycle fixed in issue 11, put back
            "fhir_bridge.mapping.clinical.readers",
            "from fhir_bridge.mapping.clinical import hl7v2  # noqa",
            "No import cycles, at any depth",
            ".readers -> .hl7v2",
            id="cycle",
        ),
        pytest.param(  # a layer-skipping import: the HTTP edge reading the store's tables
            "fhir_bridge.api.x",
            "from fhir_bridge.store import tables  # noqa",
            "Only the store touches its tables",
            "fhir_bridge.api.x -> fhir_bridge.store.tables",
            id="edge-to-tables",
        ),
        pytest.param(
            "fhir_bridge.api.x",
            "from fhir_bridge.search import compiler  # noqa",
            "The edges reach the store and search SQL only through services",
            "fhir_bridge.api.x -> fhir_bridge.search.compiler",
            id="edge-to-search-sql",
        ),
        pytest.param(  # a listener reading the store directly
            "fhir_bridge.listeners.mllp",
            "from fhir_bridge.store import store  # noqa",
            "The edges reach the store and search SQL only through services",
            "fhir_bridge.listeners.mllp -> fhir_bridge.store.store",
            id="listener-to-store",
        ),
        pytest.param(  # an upward import
            "fhir_bridge.store.x",
            "from fhir_bridge.interactions import service  # noqa",
            "Layers import downward only",
            "fhir_bridge.store.x -> fhir_bridge.interactions.service",
            id="upward",
        ),
        pytest.param(  # siblings of one layer are independent
            "fhir_bridge.bulk.x",
            "from fhir_bridge.audit import log  # noqa",
            "Layers import downward only",
            "fhir_bridge.bulk.x -> fhir_bridge.audit.log",
            id="sideways",
        ),
        pytest.param(
            "fhir_bridge.ingest.x",
            "from fhir_bridge.store.store import Store  # noqa",
            "Ingest writes through interactions",
            "fhir_bridge.ingest.x -> fhir_bridge.store.store",
            id="ingest-to-store",
        ),
        pytest.param(
            "fhir_bridge.catalogue.x",
            "from fhir_bridge.settings import Settings  # noqa",
            "Only the edges and services read Settings",
            "fhir_bridge.catalogue.x -> fhir_bridge.settings",
            id="settings-below-services",
        ),
        pytest.param(  # a new top-level package must be placed in the layers
            "fhir_bridge.unplaced",
            "",
            "Layers import downward only",
            "fhir_bridge.unplaced",
            id="unplaced-package",
        ),
    ],
)
def test_a_bad_import_breaks_its_contract(
    tmp_path: Path, module: str, source: str, contract: str, reported: str
) -> None:
    result = _lint(_copy_with(tmp_path, module, source))
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert reported in broken, result.stdout
