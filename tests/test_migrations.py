"""Schema migrations (Alembic): a store of the previous release is refused until upgraded, then reads
its data; an empty database starts at head; the models and the migrated schema agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from fhir_bridge import Settings, create_app
from fhir_bridge.cli import main
from fhir_bridge.errors import ConfigurationError
from fhir_bridge.services import Services
from fhir_bridge.store.database import create_engines
from fhir_bridge.store.migration import _config, head, prepare_schema, schema_differences
from fhir_bridge.store.schema import STORE_METADATA

RELEASE = Path(__file__).parent / "data" / "release-0.1"
FIXTURE_SCHEMA = "release_0_1"


def load_previous_release(database_url: str) -> dict:
    """The fixture written by fhir-bridge 0.1 (tests/data/release-0.1/make_fixture.py), loaded into
    ``database_url``; returns what that release answered."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        shutil.copyfile(RELEASE / "store.db", url.database or "")
        dialect = "sqlite"
    else:
        schema = url.query["options"].split("=")[-1]
        lines = (RELEASE / "postgresql.sql").read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if not line.startswith("\\") and not line.startswith("CREATE SCHEMA")]
        script = "\n".join(kept).replace(f"{FIXTURE_SCHEMA}.", f"{schema}.")
        engines = create_engines(database_url)
        with engines.writer.begin() as connection:
            connection.connection.driver_connection.execute(script)  # type: ignore[union-attr] (no parameters)
        engines.dispose()
        dialect = "postgresql"
    return json.loads((RELEASE / "expected.json").read_text(encoding="utf-8"))[dialect]


def test_a_store_of_the_previous_release_is_refused_until_upgraded_then_serves_its_data(database_url, capsys):
    expected = load_previous_release(database_url)
    with pytest.raises(ConfigurationError, match=r"unversioned .*fhir-bridge db upgrade"):
        Services.from_settings(Settings(database_url=database_url)).engines  # noqa: B018 (the start)
    assert main(["db", "current", "--database-url", database_url]) == 2
    assert "unversioned" in capsys.readouterr().out

    assert main(["db", "upgrade", "--database-url", database_url]) == 0
    assert f"unversioned -> {head()}" in capsys.readouterr().out
    assert main(["db", "current", "--database-url", database_url]) == 0

    app = create_app(Settings(database_url=database_url))
    with TestClient(app) as http:
        study = http.get(f"/fhir/{expected['study']}").json()
        assert study["subject"]["reference"] == expected["patient"]
        assert len(study["series"]) == expected["series"]
        found = http.get("/fhir/Observation", params={"subject": expected["patient"]}).json()
        assert [entry["resource"]["id"] for entry in found["entry"]] == [expected["observation"]]
        assert found["entry"][0]["resource"]["status"] == "final"
        conditions = http.get("/fhir/Condition", params={"code": "254637007"}).json()["entry"]
        assert [entry["resource"]["id"] for entry in conditions] == [expected["condition"]]
        assert http.get(f"/fhir/Observation/{expected['deleted']}").status_code == 410
        assert http.get(f"/fhir/Observation/{expected['observation']}/_history/1").json()["status"] == "preliminary"
        history = http.get("/fhir/_history", params={"_since": expected["since"]}).json()
        assert (
            sorted(f"{e['request']['method']} {e['request']['url']}" for e in history["entry"])
            == (expected["history_since"])
        )
        # the store goes on where the old release stopped: new versions come after the old ones
        newer = http.put(
            f"/fhir/Observation/{expected['observation']}", json={**found["entry"][0]["resource"], "status": "amended"}
        )
        assert newer.json()["meta"]["versionId"] == "3"
        page = http.get("/fhir/_history", params={"_since": expected["since"]}).json()
        assert len(page["entry"]) == len(expected["history_since"]) + 1
    app.state.services.close()


def test_the_setting_upgrades_a_previous_release_store_at_start(database_url):
    expected = load_previous_release(database_url)
    app = create_app(Settings(database_url=database_url, upgrade_schema=True))
    with TestClient(app) as http:
        assert http.get(f"/fhir/{expected['patient']}").status_code == 200
    app.state.services.close()


def test_an_empty_database_is_created_at_head_and_needs_no_upgrade(database_url, capsys):
    with Services.from_settings(Settings(database_url=database_url)) as services:
        assert services.schema_state().describe().startswith("empty")
        services.engines  # noqa: B018 (the start creates it)
        assert services.schema_state().current
    assert main(["db", "upgrade", "--database-url", database_url]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_the_models_and_the_migrated_schema_agree(database_url):
    """A table, column or index changed in the models without a new revision fails here."""
    import fhir_bridge.services  # noqa: F401  (every owner's tables declared on STORE_METADATA)

    engines = create_engines(database_url)
    prepare_schema(engines)
    assert schema_differences(engines, STORE_METADATA) == []
    engines.dispose()


def test_a_database_of_a_newer_fhir_bridge_is_refused(database_url):
    engines = create_engines(database_url)
    prepare_schema(engines)
    with engines.writer.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'r9999'"))
    with pytest.raises(ConfigurationError, match="r9999, unknown to this fhir-bridge"):
        prepare_schema(engines, upgrade=True)
    engines.dispose()


def test_the_revisions_ship_inside_the_package():
    """An installed fhir-bridge finds its revisions beside its code, wherever it runs from."""
    import tomllib
    from fnmatch import fnmatch

    from fhir_bridge.store.migration import MIGRATIONS

    root = Path(__file__).parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "fhir_bridge.store"
    ]
    files = [path.relative_to(MIGRATIONS.parent).as_posix() for path in MIGRATIONS.rglob("*.*") if path.is_file()]
    assert any(name.startswith("migrations/versions/") for name in files)
    assert [name for name in files if "__pycache__" not in name and not any(fnmatch(name, g) for g in globs)] == []


def test_workers_upgrading_a_previous_release_store_together_upgrade_it_once(database_url):
    """Several workers started with FHIR_BRIDGE_UPGRADE_SCHEMA on an old store: one upgrades (under the
    schema lock), the others find it current; all serve."""
    from concurrent.futures import ThreadPoolExecutor

    expected = load_previous_release(database_url)
    workers = [Services.from_settings(Settings(database_url=database_url, upgrade_schema=True)) for _ in range(4)]
    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(lambda services: services.engines, workers))
    for services in workers:
        assert services.schema_state().current
        assert services.store.read(*expected["patient"].split("/")) is not None
        services.close()


def test_serve_on_a_previous_release_store_stops_with_one_line(tmp_path):
    """Through the command (on SQLite only: the refusal itself is tested on both backends above)."""
    import subprocess
    import sys

    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    load_previous_release(database_url)
    command = [str(Path(sys.executable).parent / "fhir-bridge"), "serve", "--port", "1", "--database-url", database_url]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "cannot start" in line or "Traceback" in line]
    assert len(lines) == 1 and "fhir-bridge db upgrade" in lines[0], done.stderr


def _token_value_index(database_url: str) -> tuple[list[str], list[str], object]:
    """(key columns, included columns, an identity of the built index) of ``ix_idx_token_value``."""
    engines = create_engines(database_url)
    with engines.reader.connect() as connection:
        index = next(i for i in inspect(connection).get_indexes("idx_token") if i["name"] == "ix_idx_token_value")
        if engines.dialect == "postgresql":
            built = connection.exec_driver_sql("SELECT 'ix_idx_token_value'::regclass::oid").scalar()
        else:
            built = connection.exec_driver_sql(
                "SELECT rootpage FROM sqlite_master WHERE name = 'ix_idx_token_value'"
            ).scalar()
    engines.dispose()
    return list(index["column_names"]), list(index["dialect_options"].get("postgresql_include") or []), built


def test_the_token_value_index_is_keyed_by_resource_after_an_upgrade_and_rebuilt_once(database_url):
    load_previous_release(database_url)
    assert main(["db", "upgrade", "--database-url", database_url]) == 0
    key, included, built = _token_value_index(database_url)
    assert key == ["res_type", "param", "code", "res_pk"]
    assert included == (["system", "seq_from", "seq_to"] if database_url.startswith("postgresql") else [])
    # r0005 run again on a store whose index is already keyed so leaves it as it is
    engines = create_engines(database_url)
    with engines.writer.begin() as connection:
        command.stamp(_config(connection), "r0004")
    engines.dispose()
    assert main(["db", "upgrade", "--database-url", database_url]) == 0
    assert _token_value_index(database_url) == (key, included, built)
    # and the searches by code and system still find what the old release stored
    expected = json.loads((RELEASE / "expected.json").read_text(encoding="utf-8"))
    app = create_app(Settings(database_url=database_url))
    with TestClient(app) as http:
        dialect = "postgresql" if database_url.startswith("postgresql") else "sqlite"
        found = http.get("/fhir/Condition", params={"code": "254637007"}).json()["entry"]
        assert [entry["resource"]["id"] for entry in found] == [expected[dialect]["condition"]]
    app.state.services.close()
