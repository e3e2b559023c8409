"""Bad input gives a clear one-line message, a non-zero exit and no other change."""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
from conftest import alive, new_home, processes_mentioning, start_plane

from branchyard.backends.local import netns

pytestmark = pytest.mark.integration


def test_malformed_toml_in_a_push_is_refused_with_the_file_and_line(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="badtoml")
    (repo / "railway.toml").write_text('[deploy]\nstartCommand = "uvicorn main:app"\nstartCommand = "again"\n')
    plane.commit(repo, "duplicate key")
    push = plane.git(repo, "push", "branchyard", "main", check=False)
    assert push.returncode != 0
    assert "railway.toml: invalid TOML" in push.stderr
    assert "line 3" in push.stderr
    assert plane.json("deployments", "-e", "production", cwd=repo) == []  # nothing was deployed


def test_unknown_environment_is_one_line_and_non_zero(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="unknownenv")
    done = plane.run("status", "-e", "nope", cwd=repo, check=False)
    assert done.returncode == 3
    assert done.stderr.strip() == "error: unknown environment 'nope' in project 'unknownenv' (known: production, staging)"
    assert "Traceback" not in done.stderr


def test_invalid_environment_name_is_refused(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="badname")
    before = plane.json("environment", "list", cwd=repo)
    done = plane.run("environment", "add", "../../etc", cwd=repo, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "'../../etc'" in done.stderr
    assert plane.json("environment", "list", cwd=repo) == before


def test_config_check_reports_errors_without_a_server(plane, tmp_path):
    app = tmp_path / "cfg"
    app.mkdir()
    (app / "railway.toml").write_text('[deploy]\nhealthcheckTimeout = "abc"\n')
    done = plane.run("config", "check", "--path", str(app), check=False)
    assert done.returncode != 0
    assert 'railway.toml: deploy.healthcheckTimeout: expected integer seconds, got "abc"' in done.stderr
    (app / "railway.toml").write_text('[deploy]\nstartCommand = "x"\nhealtcheckPath = "/h"\n')
    assert plane.run("config", "check", "--path", str(app)).returncode == 0  # an unknown key: a warning
    strict = plane.run("config", "check", "--strict", "--path", str(app), check=False)
    assert strict.returncode != 0 and 'deploy.healtcheckPath: unknown key (did you mean "healthcheckPath"?)' in strict.stderr
    (app / "railway.toml").write_text('[deploy]\nstartCommand = "x"\n[deploys]\n')  # an unknown section: an error
    misspelt = plane.run("config", "check", "--path", str(app), check=False)
    assert misspelt.returncode == 2
    assert misspelt.stderr == "error: railway.toml: unknown section [deploys] (did you mean [deploy]?) (line 3)\n"


def test_environment_delete_stops_processes_and_removes_the_route(plane, tmp_path):
    repo = plane.app_repo(tmp_path, "app", project="gone")
    plane.git(repo, "push", "branchyard", "main")
    pids = [r["pid"] for r in plane.json("status", "-e", "production", cwd=repo)["replicas"]]
    assert len(pids) == 2 and plane.get("gone.localhost").status_code == 200
    assert len(list((plane.home / "releases" / "gone").glob("*"))) == 1  # the release that delete must remove
    refused = plane.run("environment", "delete", "production", "--yes", cwd=repo, check=False)
    assert refused.returncode == 2 and "--confirm production" in refused.stderr
    plane.run("environment", "delete", "production", "--confirm", "production", cwd=repo)
    assert plane.get("gone.localhost").status_code == 404
    assert not any(alive(pid) for pid in pids)
    assert [e["name"] for e in plane.json("environment", "list", cwd=repo)] == ["staging"]
    assert not list((plane.home / "releases" / "gone").glob("*"))


def failed_start(address: str, start) -> tuple[int, str]:
    """Call `start(port)` while a socket holds `port` on `address`: (that port, what the failed start said; "" if it
    started, which the caller's assertions report)."""
    with socket.socket() as blocker:
        blocker.bind((address, 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        try:
            start(port)
        except AssertionError as err:
            return port, str(err)
        return port, ""


def test_router_port_already_taken_fails_the_server_start_cleanly(venv_cache):
    home = new_home()
    port, message = failed_start("0.0.0.0", lambda port: start_plane(home, venv_cache, http_port=port))
    assert f"port {port} is already in use" in message
    assert "Traceback" not in message
    assert processes_mentioning(str(home)) == []  # neither a control plane nor a Caddy was left behind
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout if shutil.which("nft") else ""
    assert netns.table_name(home) not in tables  # nor the home's nftables table (no environment used it)
    shutil.rmtree(home.parent, ignore_errors=True)


def test_an_api_port_already_taken_fails_the_server_start_in_one_line(venv_cache):
    home = new_home()
    port, message = failed_start("127.0.0.1", lambda port: start_plane(
        home, venv_cache, extra_env={"BRANCHYARD_API_PORT": str(port)}))
    assert f"BRANCHYARD_API_PORT: port {port} on 127.0.0.1 is already in use" in message
    assert "Traceback" not in message
    assert processes_mentioning(str(home)) == []
    shutil.rmtree(home.parent, ignore_errors=True)
