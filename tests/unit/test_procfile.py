"""Procfiles: `web` runs, `release` becomes the pre-deploy command when none is set, other types are named."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_check_cli import config_check

from branchyard.spec import load_project
from branchyard.spec.procfile import not_run, parse_procfile

PROCFILE = "web: gunicorn app:app --bind 0.0.0.0:$PORT\nrelease: flask db upgrade\nworker: celery -A app worker\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web: python app.py\n", {"web": "python app.py"}),
        (PROCFILE, {"web": "gunicorn app:app --bind 0.0.0.0:$PORT", "release": "flask db upgrade",
                    "worker": "celery -A app worker"}),
        ("# web: commented\n\nweb:   a  \nweb: b\n", {"web": "a"}),  # the first line of a type wins; comments skipped
        ("web:\nclock : python clock.py\n", {"clock": "python clock.py"}),  # an empty command declares nothing
        ("not a line\n", {}),
    ],
)
def test_parse_procfile(text, expected):
    assert parse_procfile(text) == expected


def test_not_run_names_the_types_branchyard_does_not_run():
    assert not_run("Procfile", {"web": "a", "release": "b"}) is None
    assert not_run("api/Procfile", {"web": "a", "worker": "b", "clock": "c"}) == (
        "api/Procfile: worker, clock: not run yet (branchyard runs `web`, and `release` as the pre-deploy command when "
        "none is set)")


def test_release_line_is_the_pre_deploy_command_when_none_is_set(tmp_path: Path):
    (tmp_path / "Procfile").write_text(PROCFILE)
    cfg = load_project(tmp_path).environment("production")
    assert cfg.web.pre_deploy_command == ("flask db upgrade",)
    assert cfg.sources["web.pre_deploy_command"] == "Procfile release:"
    assert cfg.web.start_command == "gunicorn app:app --bind 0.0.0.0:$PORT"


def test_railway_pre_deploy_command_wins_over_the_release_line(tmp_path: Path):
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / "railway.toml").write_text('[deploy]\npreDeployCommand = "python migrate.py"\n')
    cfg = load_project(tmp_path).environment("production")
    assert cfg.web.pre_deploy_command == ("python migrate.py",)
    assert cfg.sources["web.pre_deploy_command"] == "railway.toml [deploy]"


@pytest.mark.parametrize("strict", [(), ("--strict",)])
def test_config_check_names_the_process_types_not_run_yet(tmp_path: Path, strict: tuple[str, ...]):
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / "requirements.txt").write_text("flask\ngunicorn\n")  # an installer: no warning about it
    done = config_check(tmp_path, *strict)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: Procfile: worker: not run yet (branchyard runs `web`, and `release` as the pre-deploy command when "
        "none is set)"]
    assert load_project(tmp_path, strict=True).notices  # a notice, never a strict error: the deploy goes on
