"""Deployment files (Dockerfile, deploy/): what can be checked without Docker or systemd running.

The container's entry point runs for real; the systemd unit goes through `systemd-analyze verify`;
the Dockerfile and compose file are read for what they promise (non-root, read-only root
filesystem, a data volume, settings that exist) and, where Docker Compose is installed, checked by it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fhir_bridge import Settings

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def _without_settings(**variables: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("FHIR_BRIDGE_")}
    return {**environment, "PATH": f"{BIN}:{environment.get('PATH', '')}", **variables}


def test_the_entrypoint_makes_the_site_secret_once_then_runs_the_command(tmp_path: Path) -> None:
    environment = _without_settings(DATA_DIR=str(tmp_path))
    first = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "config", "show"], env=environment, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    key = tmp_path / "pseudonym.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f'pseudonym_key_file = "{key}"  # environment FHIR_BRIDGE_PSEUDONYM_KEY_FILE' in first.stdout
    secret = key.read_text()
    again = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "config", "show"], env=environment, capture_output=True, text=True
    )
    assert again.returncode == 0 and key.read_text() == secret  # kept: a new key would change every pseudonym
    assert "making" not in again.stderr


def test_the_entrypoint_uses_a_given_secret_and_empties_the_metrics_folder(tmp_path: Path) -> None:
    given = tmp_path / "secret.key"
    given.write_text("a-site-secret-given-as-a-file-0123456789")
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    (metrics / "counter_1234.db").write_bytes(b"stale")
    environment = _without_settings(
        DATA_DIR=str(tmp_path / "data"),
        FHIR_BRIDGE_PSEUDONYM_KEY_FILE=str(given),
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
    )
    ran = subprocess.run(["sh", str(DEPLOY / "entrypoint.sh"), "--version"], env=environment, capture_output=True)
    assert ran.returncode == 0, ran.stderr
    assert not (tmp_path / "data" / "pseudonym.key").exists()
    assert not (metrics / "counter_1234.db").exists()  # a dead process's values would be summed in


def test_the_entrypoint_passes_a_configuration_mistake_through_with_status_2(tmp_path: Path) -> None:
    environment = _without_settings(DATA_DIR=str(tmp_path), FHIR_BRIDGE_AUTH="off")
    ran = subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), "serve"], env=environment, capture_output=True, text=True
    )
    assert ran.returncode == 2 and "FHIR_BRIDGE_AUTH='off'" in ran.stderr


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_the_dockerfile_runs_as_a_user_on_files_that_exist_with_settings_that_exist() -> None:
    instructions = _instructions()
    for keyword, rest in instructions:
        if keyword == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    assert any(keyword == "VOLUME" and "/data" in rest for keyword, rest in instructions)
    variables = {
        name for keyword, rest in instructions if keyword == "ENV" for name in re.findall(r"(FHIR_BRIDGE_\w+)=", rest)
    }
    assert variables and all(name.removeprefix("FHIR_BRIDGE_").lower() in Settings.model_fields for name in variables)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"*.key", "*.pem", ".venv"} <= set(ignored)  # no secret or local venv goes into the image


def test_the_compose_file_runs_the_bridge_read_only_as_a_user_beside_postgresql() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    bridge, database = compose["services"]["fhir-bridge"], compose["services"]["db"]
    assert database["image"].startswith("postgres:")
    assert bridge["read_only"] is True and "/tmp" in bridge["tmpfs"]
    assert not str(bridge["user"]).startswith("0")
    assert bridge["depends_on"]["db"]["condition"] == "service_healthy"
    assert (DEPLOY / bridge["build"]["context"] / bridge["build"]["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert all(name.removeprefix("FHIR_BRIDGE_").lower() in Settings.model_fields for name in bridge["environment"])
    assert bridge["environment"]["FHIR_BRIDGE_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "/readyz" in " ".join(bridge["healthcheck"]["test"])


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="Docker Compose is not installed here",
)
def test_docker_compose_accepts_the_compose_file() -> None:
    checked = subprocess.run(
        ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "config", "--quiet"],
        env={**os.environ, "POSTGRES_PASSWORD": "x"},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    unit = (DEPLOY / "fhir-bridge.service").read_text()
    assert "ExecStart=/opt/fhir-bridge/.venv/bin/fhir-bridge serve" in unit
    # verify checks that ExecStart exists: point it at this checkout's venv, nothing else changed
    local = tmp_path / "fhir-bridge.service"
    local.write_text(unit.replace("/opt/fhir-bridge/.venv/bin", str(BIN)))
    verified = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def test_the_example_config_file_holds_only_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [v for v in os.environ if v.startswith("FHIR_BRIDGE_")]:
        monkeypatch.delenv(variable)
    settings = Settings(DEPLOY / "config.toml")
    assert settings.catalogue_title and settings.metrics == "token" and settings.log_format == "json"
