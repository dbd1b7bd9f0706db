"""README's set-up commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parent.parent


def _indented_commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("    ") and "&&" in line]


def test_ci_runs_the_readme_test_command():
    commands = _indented_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    test_command = next(c for c in commands if "pytest" in c)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test_command in ci_lines


def test_readme_install_command_starts_the_service():
    commands = _indented_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any(c.endswith("fhir-bridge serve") and "pip install -e ." in c for c in commands)
