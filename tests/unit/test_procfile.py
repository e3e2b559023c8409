"""Procfiles: `web` runs, `release` becomes the pre-deploy command when none is set, other types run as services
(issue 17); a type whose name cannot be a service is named by a notice."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_check_cli import config_check

from branchyard.spec import load_project
from branchyard.spec.procfile import not_run, parse_procfile, services

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


@pytest.mark.parametrize(
    ("processes", "expected"),
    [
        ({"web": "a", "release": "b"}, {}),
        ({"web": "a", "worker": "b", "clock": "c"}, {"worker": "b", "clock": "c"}),
        ({"web": "a", "mail_sender": "m", "beat-2": "x"}, {"mail_sender": "m", "beat-2": "x"}),
        ({"Worker": "b", "9lives": "c", "_x": "d"}, {}),  # not a lowercase slug: no slot or log name could carry it
    ],
)
def test_services_are_the_other_process_types(processes, expected):
    assert services(processes) == expected


def test_not_run_names_only_the_types_that_cannot_run():
    assert not_run("Procfile", {"web": "a", "release": "b", "worker": "c"}) is None
    assert not_run("api/Procfile", {"web": "a", "Worker": "b", "clock": "c"}) == (
        "api/Procfile: Worker: not run (a process type runs as a service when its name matches [a-z][a-z0-9_-]*; "
        "branchyard runs `web`, `release` as the pre-deploy command, and the other types)")


def test_other_types_are_services_of_the_environment_and_in_its_snapshot(tmp_path: Path):
    from branchyard.controller.snapshot import DeploymentConfig
    from branchyard.spec.model import ProcessConfig

    (tmp_path / "Procfile").write_text(PROCFILE + "clock: python clock.py\n")
    cfg = load_project(tmp_path).environment("production")
    assert cfg.processes == {"worker": ProcessConfig("celery -A app worker"), "clock": ProcessConfig("python clock.py")}
    assert cfg.to_dict()["processes"] == {"worker": {"command": "celery -A app worker", "replicas": 1},
                                          "clock": {"command": "python clock.py", "replicas": 1}}
    assert cfg.sources["processes.worker.command"] == "Procfile worker:"
    stored = DeploymentConfig.from_environment(cfg).to_json()
    assert DeploymentConfig.from_json(stored).processes == cfg.processes  # rollback brings back what was deployed
    assert DeploymentConfig.from_json('{"web": {}}').processes == {}  # a snapshot from before issue 17


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
def test_config_check_is_quiet_about_services_and_names_a_type_it_cannot_run(tmp_path: Path, strict: tuple[str, ...]):
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / "requirements.txt").write_text("flask\ngunicorn\n")  # an installer: no warning about it
    done = config_check(tmp_path, *strict)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (tmp_path / "Procfile").write_text(PROCFILE + "Beat: python beat.py\n")
    done = config_check(tmp_path, *strict)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: Procfile: Beat: not run (a process type runs as a service when its name matches [a-z][a-z0-9_-]*; "
        "branchyard runs `web`, `release` as the pre-deploy command, and the other types)"]
    assert load_project(tmp_path, strict=True).notices  # a notice, never a strict error: the deploy goes on
