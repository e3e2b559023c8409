"""`branchyard config check` as a user runs it (no server): exact lines on stderr, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BRANCHYARD = [sys.executable, "-m", "branchyard.cli.main"]


def config_check(app: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | {"NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([*BRANCHYARD, "config", "check", "--path", str(app), *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("strict", [(), ("--strict",)])
def test_a_misspelt_railway_section_is_named_with_its_suggestion(tmp_path: Path, strict: tuple[str, ...]) -> None:
    (tmp_path / "railway.toml").write_text('[build]\nbuildCommand = "true"\n\n[deploys]\nstartCommand = "python app.py"\n')
    done = config_check(tmp_path, *strict)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: railway.toml: unknown section [deploys] (did you mean [deploy]?) (line 4)\n"


def test_warnings_are_shown_next_to_the_errors_they_explain(tmp_path: Path) -> None:
    (tmp_path / "railway.toml").write_text('[deploy]\nstartCommnd = "python app.py"\n')
    done = config_check(tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        'warning: railway.toml: deploy.startCommnd: unknown key (did you mean "startCommand"?)',
        "error: production: no start command: set deploy.startCommand in railway.toml or a web: line in Procfile",
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status", "-e", "staging"], (["status", "-e", "staging"], False)),
        (["--verbose", "status"], (["--verbose", "status"], True)),
        (["status", "--verbose", "-e", "staging"], (["--verbose", "status", "-e", "staging"], True)),
        (["run", "-e", "pr-1", "--", "pytest", "--verbose"], (["run", "-e", "pr-1", "--", "pytest", "--verbose"], False)),
        (["run", "--verbose", "-e", "pr-1", "--", "pytest", "--verbose"],
         (["--verbose", "run", "-e", "pr-1", "--", "pytest", "--verbose"], True)),
    ],
)
def test_verbose_is_taken_anywhere_before_a_double_dash(argv: list[str], expected: tuple[list[str], bool]) -> None:
    from branchyard.cli.main import verbose_anywhere

    assert verbose_anywhere(argv) == expected


def test_verbose_after_the_subcommand_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "railway.toml").write_text('[deploy]\nstartCommand = "python app.py"\n')
    (tmp_path / "requirements.txt").write_text("flask\n")
    done = config_check(tmp_path, "--verbose")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("✓ railway.toml: OK (project ")  # the same as without --verbose
