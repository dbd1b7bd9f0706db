"""The operator's endpoints: `/` (an index), `/healthz`, `/readyz`, the request id, and `/docs`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from fhir_bridge import Settings, create_app
from tests.conftest import TEST_PSEUDONYM_KEY


@pytest.fixture
def secured_app(database_url: str) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=database_url, auth="smart", pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app) as client:
        yield client
    app.state.services.close()


def test_health_and_readiness_answer_without_a_token(secured_app: TestClient) -> None:
    assert secured_app.get("/fhir/Patient").status_code == 401  # access control is on
    assert secured_app.get("/healthz").json() == {"status": "up"}
    ready = secured_app.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok", "pseudonym_key": "ok"}}


def test_readiness_fails_with_503_when_the_schema_is_not_this_versions(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        engine = create_engine(database_url)
        with engine.begin() as connection:  # as if another release had migrated the database under it
            connection.execute(text("UPDATE alembic_version SET version_num = 'r9999_from_the_future'"))
        engine.dispose()
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["status"] == "not ready"
        assert answer.json()["checks"]["schema"].startswith("r9999_from_the_future, unknown to this fhir-bridge")
        assert answer.json()["checks"]["database"] == "ok"
        assert client.get("/healthz").status_code == 200  # the process is up all the same
    app.state.services.close()


def test_the_root_is_an_index_of_the_service_in_json_and_for_browsers(secured_app: TestClient) -> None:
    index = secured_app.get("/")
    assert index.status_code == 200 and index.headers["content-type"] == "application/json"
    links = index.json()["links"]
    assert links["fhir"]["href"] == "/fhir/metadata"
    assert {"health", "ready", "catalogue", "ui"} <= set(links)
    assert not {"metrics", "docs", "openapi"} & set(links)  # off by default (API docs: with access control on)
    for name, link in links.items():
        if name != "stow-rs":  # POST only
            answer = secured_app.get(link["href"], follow_redirects=False)
            assert answer.status_code < 400, link  # each answers without a token (the UI: its login)
    page = secured_app.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html")
    assert '<a href="/fhir/metadata">' in page.text and '<a href="/healthz">' in page.text


def test_the_index_links_the_api_docs_where_they_are_served(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY, auth="none"))
    with TestClient(app) as client:
        links = client.get("/").json()["links"]
        assert {links[name]["href"] for name in ("docs", "redoc", "openapi")} == {"/docs", "/redoc", "/openapi.json"}
        assert all(client.get(links[name]["href"]).status_code == 200 for name in ("docs", "redoc", "openapi"))
    app.state.services.close()


def test_every_answer_carries_a_request_id_and_a_proxys_id_is_kept(secured_app: TestClient) -> None:
    first, second = secured_app.get("/fhir/Patient"), secured_app.get("/healthz")
    assert first.status_code == 401  # refusals by access control too
    assert len(first.headers["x-request-id"]) == 32 and first.headers["x-request-id"] != second.headers["x-request-id"]
    kept = secured_app.get("/healthz", headers={"X-Request-Id": "proxy-req-0001"})
    assert kept.headers["x-request-id"] == "proxy-req-0001"
    replaced = secured_app.get("/healthz", headers={"X-Request-Id": "<script>"})
    assert replaced.headers["x-request-id"] != "<script>" and len(replaced.headers["x-request-id"]) == 32


def test_a_catalogue_left_at_its_placeholders_is_warned_of_at_start(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="fhir_bridge"):
        app = create_app(Settings(database_url=database_url, pseudonym_key=TEST_PSEUDONYM_KEY))
    app.state.services.close()
    warned = [r.getMessage() for r in caplog.records if "placeholder" in r.getMessage()]
    assert warned and "title, publisher_name" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="fhir_bridge"):
        named = create_app(
            Settings(
                database_url=database_url,
                pseudonym_key=TEST_PSEUDONYM_KEY,
                catalogue_title="Breast MRI of Hospital X",
                catalogue_publisher_name="Hospital X",
            )
        )
    named.state.services.close()
    assert not [r for r in caplog.records if "placeholder" in r.getMessage()]


def test_fhir_bridge_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    from fhir_bridge.cli import main
    from fhir_bridge.version import package_version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"fhir-bridge {package_version()}"


def test_gitignore_keeps_keys_and_databases_out_of_the_working_tree() -> None:
    import subprocess
    from pathlib import Path

    root = Path(__file__).parent.parent
    names = ["pseudonym.key", "client.pem", "pacs-router.pem", "site.jwks.key", "fhir-bridge.db", "config.local.toml"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *names], cwd=root, capture_output=True, text=True
    ).stdout.split()
    assert set(ignored) >= {"pseudonym.key", "client.pem", "pacs-router.pem", "site.jwks.key", "fhir-bridge.db"}
