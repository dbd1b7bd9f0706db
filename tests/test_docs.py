"""The documentation stays true: links resolve, the README stays short, generated pages are current,
and the examples a reader copies run against the real service.

Markdown is read with markdown-it-py (CommonMark, tables on), so links and headings are found as a
renderer finds them, not inside code. Anchors follow GitHub's rules (github-slugger): the heading's
text in lower case, without punctuation but ``-`` and ``_``, each space a hyphen, and ``-1``,
``-2``, ... for repeated headings.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import orjson
import pytest
from fastapi.testclient import TestClient
from markdown_it import MarkdownIt
from markdown_it.token import Token
from starlette.routing import Mount

from fhir_bridge import Settings, create_app
from fhir_bridge.cli import parser
from fhir_bridge.cli.common import settings_from
from fhir_bridge.settings_page import PAGE, main, render_page, setting_flags
from tests.conftest import TEST_PSEUDONYM_KEY, serving
from tests.dicom_samples import study_set

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
README_LIMIT = 8192
MARKDOWN = MarkdownIt("commonmark").enable("table")


def _markdown_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(ROOT / name for name in listed if (ROOT / name).is_file())


def _walk(tokens: list[Token]):
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def github_anchor(text: str) -> str:
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    tokens = MARKDOWN.parse(path.read_text(encoding="utf-8"))
    found: dict[str, int] = {}
    names = set()
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        inline = tokens[index + 1]
        text = "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline"))
        anchor = github_anchor(text)
        seen = found.get(anchor, 0)
        found[anchor] = seen + 1
        names.add(anchor if seen == 0 else f"{anchor}-{seen}")
    return frozenset(names)


def links(path: Path) -> list[str]:
    tokens = MARKDOWN.parse(path.read_text(encoding="utf-8"))
    return [
        str(token.attrs.get("href") or token.attrs.get("src"))
        for token in _walk(tokens)
        if token.type in ("link_open", "image")
    ]


def broken_link(source: Path, target: str) -> str | None:
    """Why a relative link of ``source`` does not resolve, or None when it does."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        return None  # http:, https:, mailto:
    path_part, _, anchor = target.partition("#")
    destination = (source.parent / unquote(path_part)).resolve() if path_part else source
    if not destination.exists():
        return f"{target}: no such file"
    if not destination.is_relative_to(ROOT.resolve()):
        return f"{target}: outside the repository"
    if anchor and destination.suffix == ".md" and unquote(anchor) not in anchors(destination):
        return f"{target}: no heading #{anchor} in {destination.relative_to(ROOT.resolve())}"
    return None


def test_github_anchors_are_made_like_githubs() -> None:
    assert github_anchor("Bulk export ($export)") == "bulk-export-export"
    assert github_anchor("store_api: ingest, read and search over real HTTP") == (
        "store_api-ingest-read-and-search-over-real-http"
    )
    assert (
        github_anchor("Tokens from the hospital's identity provider") == "tokens-from-the-hospitals-identity-provider"
    )
    assert github_anchor("search_scale: search over 100,000 ImagingStudies") == (
        "search_scale-search-over-100000-imagingstudies"
    )


def test_every_relative_link_of_the_docs_resolves() -> None:
    pages = _markdown_files()
    assert README in pages and (ROOT / "docs" / "configuration.md") in pages
    problems = [
        f"{page.relative_to(ROOT)}: {problem}"
        for page in pages
        for target in links(page)
        if (problem := broken_link(page, target))
    ]
    assert not problems, "\n".join(problems)


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    assert broken_link(README, "docs/no-such-page.md") == "docs/no-such-page.md: no such file"
    assert "no heading #no-such-section" in str(broken_link(README, "docs/fhir-api.md#no-such-section"))
    assert broken_link(README, "docs/fhir-api.md#limits") is None
    assert broken_link(README, "#quick-start") is None


def test_the_readme_is_short_and_links_every_docs_page() -> None:
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; keep it under {README_LIMIT}: move detail to docs/"
    linked = {target.partition("#")[0] for target in links(README)}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= linked, f"docs pages the README's table does not link: {sorted(pages - linked)}"


def test_the_configuration_page_is_generated_from_the_current_settings() -> None:
    assert PAGE.read_text(encoding="utf-8") == render_page(), (
        "docs/configuration.md is out of date: run python -m fhir_bridge.settings_page"
    )
    for name in Settings.model_fields:
        assert f"`FHIR_BRIDGE_{name.upper()}`" in render_page()


def test_the_page_generator_check_fails_on_a_stale_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    assert main(["--output", str(page)]) == 0 and page.read_text(encoding="utf-8") == render_page()
    assert main(["--check", "--output", str(page)]) == 0
    page.write_text(render_page().replace("Page size of a search", "Page size"), encoding="utf-8")
    assert main(["--check", "--output", str(page)]) == 1


def test_every_setting_has_a_description() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not undescribed


def test_the_flags_the_configuration_page_names_set_their_settings(tmp_path: Path) -> None:
    samples = {
        "database_url": "sqlite:///elsewhere.db",
        "host": "0.0.0.0",
        "port": "8099",
        "pseudonym_key_file": str(tmp_path / "site.key"),
        "auth": "none",
        "mappings_dir": str(tmp_path),
        "dimse_port": "11112",
        "mllp_port": "2575",
        "upgrade_schema": "True",  # a switch: the flag alone sets it
        "token_key_file": str(tmp_path / "token-keys.json"),
    }
    switches = {"upgrade_schema"}
    flags = setting_flags(parser())
    assert set(flags) == set(samples)
    for name, by_flag in flags.items():
        for flag, commands in by_flag.items():
            for command in commands:
                arguments = {
                    "serve": ["serve"],
                    "ingest": ["ingest", "folder"],
                    "ingest-clinical": ["ingest-clinical", "--mapping", "m", "file.csv"],
                    "clients": ["clients", "list"],
                    "audit": ["audit", "verify"],
                    "explain": ["explain", "Patient"],
                    "mappings": ["mappings", "list"],
                    "export": ["export", "eucaim-cdm", "--to", "postgresql+psycopg://cdm"],
                    "dimse": ["dimse"],
                    "mllp": ["mllp"],
                    "db": ["db", "backup", "site.backup"],
                    "patient": ["patient", "erase", "some-id"],
                    "keys": ["keys", "rotate-signing"],
                }[command]
                value = [] if name in switches else [samples[name]]
                parsed = parser().parse_args([*arguments, flag, *value])
                assert str(getattr(settings_from(parsed), name)) == samples[name], (command, flag)


def _readme_commands() -> list[str]:
    """The README's indented example lines a reader runs against the trial server."""
    lines = [line[4:] for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("    ")]
    return [line for line in lines if line.startswith(("curl ", "python examples/"))]


def test_the_readme_examples_run_against_the_service_with_curl(tmp_path: Path) -> None:
    """Push, search and harvest as the README prints them, with curl and the harvest script, on the
    quick start's settings (SQLite, access control off)."""
    for folder in ("mappings", "examples"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    (tmp_path / "image.dcm").write_bytes(next(study_set(studies=1, series=1, instances=1))[1])
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'fhir-bridge.db'}",
            auth="none",
            pseudonym_key=TEST_PSEUDONYM_KEY,
            pseudonym_key_file=None,
        )
    )
    commands = _readme_commands()
    assert len(commands) >= 8
    outputs: dict[str, str] = {}
    with serving(app) as port:
        for command in commands:
            runnable = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            if runnable.startswith("curl "):
                runnable = "curl --fail-with-body --show-error " + runnable.removeprefix("curl ")
            else:
                runnable = shlex.quote(sys.executable) + " " + runnable.removeprefix("python ")
            done = subprocess.run(
                ["bash", "-c", runnable], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=os.environ
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs[command] = done.stdout
    app.state.services.close()

    def answer(fragment: str) -> dict:
        return orjson.loads(next(out for command, out in outputs.items() if fragment in command))

    def types(bundle: dict) -> list[str]:
        return [entry["resource"]["resourceType"] for entry in bundle.get("entry", [])]

    assert answer("dicomweb/studies")["00081199"]["Value"]  # the Referenced SOP Sequence: stored
    assert answer("ingest/clinical")["summary"]["failed"] == 0
    assert {"ImagingStudy", "Patient"} <= set(types(answer("ImagingStudy?started")))
    assert types(answer("_has:Condition")) and set(types(answer("_has:Condition"))) == {"Patient"}
    assert types(answer("Patient?identifier=")) == ["Patient"]
    export = next(out for command, out in outputs.items() if "$export" in command)
    assert re.search(r"(?im)^content-location: .*/\$export-status/", export)
    assert "dcat:Catalog" in next(out for command, out in outputs.items() if "/catalogue" in command)
    harvested = [orjson.loads(line) for line in (tmp_path / "harvest.ndjson").read_text(encoding="utf-8").splitlines()]
    kinds = {line["resource"]["resourceType"] for line in harvested}
    assert {"ImagingStudy", "Patient", "Condition", "Provenance"} <= kinds


PYTHON_EXAMPLES = {
    # page: first line of each ```python block that runs on its own (the others need a server or files)
    "docs/operations.md": "from fastapi import FastAPI",
    "docs/development.md": "from fhir_bridge.services import Services",
}


@pytest.mark.parametrize("page", sorted(PYTHON_EXAMPLES))
def test_the_python_examples_of_the_docs_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    example = next(block for block in blocks if block.startswith(PYTHON_EXAMPLES[page]))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(example, namespace)  # the example, as printed
    if "host" in namespace:  # the mounted app answers under its mount path
        host = namespace["host"]
        with TestClient(host) as client:
            assert client.get("/fhir/metadata").json()["resourceType"] == "CapabilityStatement"
        next(route.app for route in host.routes if isinstance(route, Mount)).state.services.close()
    if "bundle" in namespace:
        assert namespace["bundle"]["type"] == "searchset"
