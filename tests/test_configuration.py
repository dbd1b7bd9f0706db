"""One source of settings (a TOML config file, environment and flags over it) and friendly configuration errors.

The commands run as a user runs them: the real ``fhir-bridge`` executable in a subprocess, with an
environment holding only what each test gives it (conftest's FHIR_BRIDGE_* test defaults removed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from fhir_bridge import Settings
from fhir_bridge.errors import ConfigurationError
from tests.conftest import POSTGRES_URL, TEST_PSEUDONYM_KEY, free_port
from tests.security_helpers import ClientKey, assertion
from tests.server_process import first_answer

EXECUTABLE = str(Path(sys.executable).parent / "fhir-bridge")


def clean_environment(**variables: str) -> dict[str, str]:
    """The test process's environment without its FHIR_BRIDGE_* settings, plus ``variables``."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("FHIR_BRIDGE_")}
    return {**environment, **variables}


def run(arguments: list[str], cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *arguments], cwd=cwd, env=clean_environment(**variables), capture_output=True, text=True
    )


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_clients_add_writes_to_the_database_the_config_file_names_and_serve_accepts_its_token(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "pseudonym.key").write_text(TEST_PSEUDONYM_KEY)
    port = free_port()
    config = write_config(
        tmp_path / "config.toml",
        f'database_url = "{database_url}"\nauth = "smart"\npseudonym_key_file = "pseudonym.key"\nport = {port}\n'
        '[catalogue]\ntitle = "Lung CT of the test hospital"\n',
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    added = run(
        ["clients", "add", "harvester", "--role", "harvester", "--new-key", "harvester.pem", "--config", str(config)],
        work,
    )
    assert added.returncode == 0, added.stderr
    assert not (work / "fhir-bridge.db").exists()  # not the default database in the working directory

    server = subprocess.Popen(
        [EXECUTABLE, "serve"],
        cwd=tmp_path,
        env=clean_environment(FHIR_BRIDGE_CONFIG=str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}/fhir"
        first_answer(f"{base}/metadata", server, lambda: server.stderr.read() if server.stderr else "")
        pem = (work / "harvester.pem").read_bytes()
        key = ClientKey(serialization.load_pem_private_key(pem, None), "harvester-1", "ES384")
        answer = httpx.post(
            f"{base}/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion("harvester", key, audience=f"{base}/auth/token"),
                "scope": "system/ImagingStudy.rs",
            },
        )
        assert answer.status_code == 200, answer.text
        token = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        assert httpx.get(f"{base}/ImagingStudy", headers=token).status_code == 200
        assert httpx.get(f"{base}/ImagingStudy").status_code == 401  # auth = "smart" came from the file
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_environment_overrides_the_file_and_flags_override_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "config.toml", 'port = 9001\nhost = "0.0.0.0"\ndefault_count = 7\n')
    monkeypatch.setenv("FHIR_BRIDGE_PORT", "9002")
    monkeypatch.setenv("FHIR_BRIDGE_HOST", "10.0.0.1")
    settings = Settings(config, host="127.0.0.2")
    assert (settings.port, settings.host, settings.default_count) == (9002, "127.0.0.2", 7)
    assert settings.source_of("port") == "environment FHIR_BRIDGE_PORT"
    assert settings.source_of("host") == "argument"
    assert settings.source_of("default_count") == f"file {config}"
    assert settings.source_of("max_count") == "default"
    monkeypatch.setenv("FHIR_BRIDGE_CONFIG", str(config))
    assert Settings().default_count == 7  # FHIR_BRIDGE_CONFIG names the file when no argument does


def test_relative_files_in_the_config_file_are_found_beside_it_wherever_a_command_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    config = write_config(etc / "config.toml", 'pseudonym_key_file = "pseudonym.key"\nmappings_dir = "/srv/mappings"\n')
    monkeypatch.delenv("FHIR_BRIDGE_PSEUDONYM_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(config)
    assert settings.pseudonym_key_file == etc / "pseudonym.key"
    assert settings.mappings_dir == Path("/srv/mappings")


def test_config_show_prints_each_setting_with_its_source_and_masks_secrets(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        f'pseudonym_key = "{TEST_PSEUDONYM_KEY}"\n'
        'database_url = "postgresql+psycopg://fhir:s3cret-pw@db.hospital.local:5432/fhir"\n',
    )
    shown = run(["config", "show", "--config", str(config)], tmp_path, FHIR_BRIDGE_PORT="8443")
    assert shown.returncode == 0, shown.stderr
    assert TEST_PSEUDONYM_KEY not in shown.stdout and "s3cret-pw" not in shown.stdout
    lines = shown.stdout.splitlines()
    assert f'pseudonym_key = "********"  # file {config}' in lines
    assert f'database_url = "postgresql+psycopg://fhir:***@db.hospital.local:5432/fhir"  # file {config}' in lines
    assert "port = 8443  # environment FHIR_BRIDGE_PORT" in lines
    assert 'fhir_path = "/fhir"  # default' in lines


CONFIGURATION_MISTAKES = {
    "bad value in the environment": (
        ["config", "show"],
        {"FHIR_BRIDGE_AUTH": "off"},
        "",
        ["FHIR_BRIDGE_AUTH='off'", "`smart` or `none`"],
    ),
    "bad number in the environment, serve": (
        ["serve"],
        {"FHIR_BRIDGE_PORT": "eighty"},
        "",
        ["FHIR_BRIDGE_PORT='eighty'", "integer"],
    ),
    "value out of bounds in the file": (
        ["clients", "list"],
        {},
        "default_count = 0\n",
        ["default_count = 0 in the config file", "integer ≥ 1"],
    ),
    "unknown environment variable": (
        ["clients", "list"],
        {"FHIR_BRIDGE_DATABSE_URL": "sqlite:///x.db"},
        "",
        ["FHIR_BRIDGE_DATABSE_URL", "did you mean FHIR_BRIDGE_DATABASE_URL"],
    ),
    "unknown key in the config file": (
        ["serve"],
        {},
        'pseudonym_keyfile = "pseudonym.key"\n',
        ["unknown setting 'pseudonym_keyfile'", "did you mean 'pseudonym_key_file'"],
    ),
    "config file that does not exist": (
        ["serve", "--config", "missing.toml"],
        {},
        "",
        ["missing.toml", "does not exist"],
    ),
    "config file that is not TOML": (["serve"], {}, "port = = 1\n", ["not valid TOML", "line 1"]),
    "PostgreSQL database that does not exist": (
        ["clients", "add", "x", "--role", "harvester", "--jwks-url", "https://x.example/jwks"],
        {"FHIR_BRIDGE_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + "/fhir_bridge_no_such_db"},
        "",
        ['database "fhir_bridge_no_such_db" does not exist', "createdb"],
    ),
    "PostgreSQL database that does not exist, db current": (
        ["db", "current"],
        {"FHIR_BRIDGE_DATABASE_URL": POSTGRES_URL.rsplit("/", 1)[0] + "/fhir_bridge_no_such_db"},
        "",
        ['database "fhir_bridge_no_such_db" does not exist', "createdb"],
    ),
    "unreachable PostgreSQL": (
        ["serve"],
        {"FHIR_BRIDGE_DATABASE_URL": "postgresql+psycopg://fhir@127.0.0.1:1/fhir", "FHIR_BRIDGE_PSEUDONYMISE": "false"},
        "",
        ["cannot reach PostgreSQL at 127.0.0.1:1", "connection refused"],
    ),
}


@pytest.mark.parametrize("mistake", CONFIGURATION_MISTAKES, ids=list(CONFIGURATION_MISTAKES))
def test_a_configuration_mistake_is_one_or_two_lines_naming_it_and_exit_status_2(mistake: str, tmp_path: Path) -> None:
    if "PostgreSQL database" in mistake:
        pytest.importorskip("psycopg")
        from tests.conftest import _postgres_available

        if _postgres_available():
            pytest.skip("PostgreSQL unreachable")
    arguments, variables, config_text, expected = CONFIGURATION_MISTAKES[mistake]
    if config_text:
        variables = {**variables, "FHIR_BRIDGE_CONFIG": str(write_config(tmp_path / "config.toml", config_text))}
    result = run(arguments, tmp_path, **variables)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("fhir-bridge: cannot start: ")
    assert "Traceback" not in result.stderr
    for fragment in expected:
        assert fragment in result.stderr


def test_unknown_settings_keywords_are_refused_with_the_closest_name() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting 'databse_url' \(did you mean 'database_url'\?\)"):
        Settings(databse_url="sqlite:///x.db")


def test_a_bad_secret_is_named_without_its_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_BRIDGE_PSEUDONYM_KEY", raising=False)  # it would win over the file
    config = write_config(tmp_path / "config.toml", 'pseudonym_key = ["secret-in-a-list"]\n')
    with pytest.raises(ConfigurationError) as refused:
        Settings(config)
    assert "pseudonym_key" in str(refused.value) and "secret-in-a-list" not in str(refused.value)
