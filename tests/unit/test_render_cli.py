"""`branchyard render`'s command line (pinned: `render -e ENV [--backend kubernetes] [-o DIR]`) and the Kubernetes
backend's operator settings (BRANCHYARD_BACKEND, BRANCHYARD_KUBE_*): one-line errors, non-zero exits, no partial
writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from branchyard import settings as settings_module
from branchyard.cli.main import cli
from branchyard.errors import BadInput

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yoto-smart-stream"
CLEAN = {k: "" for k in os.environ if k.startswith("BRANCHYARD_")}


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["render", *args], env=CLEAN | (env or {}))


def test_render_writes_one_file_per_object_in_apply_order(tmp_path):
    out = tmp_path / "manifests"
    result = run("-e", "staging", "--path", str(EXAMPLE), "-o", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.glob("*.yaml"))
    assert files[0] == "00-namespace-branchyard-yoto-staging.yaml"
    assert files[1:3] == ["01-limitrange-environment.yaml", "02-resourcequota-environment.yaml"]
    printed = list(yaml.safe_load_all(run("-e", "staging", "--path", str(EXAMPLE)).output))
    assert [yaml.safe_load((out / f).read_text()) for f in files] == printed
    assert f"{len(files)} manifests written to {out}" in result.output


def test_render_replaces_its_own_directory_whole(tmp_path):
    out = tmp_path / "m"
    assert run("-e", "staging", "--path", str(EXAMPLE), "-o", str(out)).exit_code == 0
    (out / "99-stale-object.yaml").write_text("kind: Stale\n")
    assert run("-e", "pr-5", "--path", str(EXAMPLE), "-o", str(out)).exit_code == 0
    names = {p.name for p in out.iterdir()}
    assert "99-stale-object.yaml" not in names and "00-namespace-branchyard-yoto-pr-5.yaml" in names
    assert not [p for p in tmp_path.iterdir() if p.name != "m"]  # no temporary directory left behind


def branchyard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The installed command, through its real entry point (one-line errors, exit codes)."""
    return subprocess.run([str(Path(sys.executable).with_name("branchyard")), *args], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | (env or {}))


def test_render_never_writes_into_a_directory_it_did_not_make(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = branchyard("render", "-e", "staging", "--path", str(EXAMPLE), "-o", str(out))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: -o {out}: exists and was not written by `branchyard render` "
                                     "(give a new or empty directory)")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (["-e", "nowhere"], {}, 3, "error: unknown environment 'nowhere' (declared: production, staging, pr-*)"),
    (["-e", "staging", "--backend", "local"], {}, 2, "error: --backend local: the local backend runs processes"),
    (["-e", "staging"], {"BRANCHYARD_KUBE_INGRESS_CLASS": "Not A Class"}, 2,
     "error: BRANCHYARD_KUBE_INGRESS_CLASS: expected an IngressClass name, got 'Not A Class'"),
])
def test_bad_input_is_one_line_and_non_zero(args, env, code, message):
    result = branchyard("render", *args, "--path", str(EXAMPLE), env=env)
    assert (result.returncode, result.stdout) == (code, "")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith(message), result.stderr


def test_render_uses_the_files_not_the_shell(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(EXAMPLE, app)
    text = (app / "branchyard.toml").read_text().replace('LOG_LEVEL = "warning"', 'LOG_LEVEL = "error"')
    (app / "branchyard.toml").write_text(text)
    docs = list(yaml.safe_load_all(run("-e", "production", "--path", str(app)).output))
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith("variables-"))
    assert secret["stringData"]["LOG_LEVEL"] == "error"


# --- operator settings -----------------------------------------------------------------------------------------------

def test_the_local_backend_is_the_default():
    s = settings_module.load({"BRANCHYARD_HOME": "/x"})
    assert s.backend == "local"
    assert (s.kubernetes.namespace_prefix, s.kubernetes.runtime_image, s.kubernetes.ingress_class) == (
        "branchyard-", "python:3.11-slim", None)


@pytest.mark.parametrize(("env", "field", "value"), [
    ({"BRANCHYARD_BACKEND": "kubernetes"}, "backend", "kubernetes"),
    ({"BRANCHYARD_KUBECONFIG": "/etc/k/config"}, "kubeconfig", Path("/etc/k/config")),
    ({"BRANCHYARD_KUBE_NAMESPACE_PREFIX": ""}, "namespace_prefix", ""),
    ({"BRANCHYARD_KUBE_NAMESPACE_PREFIX": "team-a-"}, "namespace_prefix", "team-a-"),
    ({"BRANCHYARD_KUBE_CLUSTER_ISSUER": "letsencrypt-prod"}, "cluster_issuer", "letsencrypt-prod"),
    ({"BRANCHYARD_KUBE_RUNTIME_IMAGE": "registry.local:5000/python:3.12-slim"}, "runtime_image",
     "registry.local:5000/python:3.12-slim"),
    ({"BRANCHYARD_KUBE_CONTROL_URL": "https://Deploy.Example.com/"}, "control_url", "https://deploy.example.com"),
])
def test_settings_are_read(env, field, value):
    s = settings_module.load({"BRANCHYARD_HOME": "/x"} | env)
    assert getattr(s if field == "backend" else s.kubernetes, field) == value


@pytest.mark.parametrize(("env", "message"), [
    ({"BRANCHYARD_BACKEND": "nomad"}, "BRANCHYARD_BACKEND: expected one of local, kubernetes, got 'nomad'"),
    ({"BRANCHYARD_KUBE_NAMESPACE_PREFIX": "Team_"}, "BRANCHYARD_KUBE_NAMESPACE_PREFIX: expected up to 22"),
    ({"BRANCHYARD_KUBE_NAMESPACE_PREFIX": "team"}, "ending in '-'"),
    ({"BRANCHYARD_KUBE_INGRESS_NAMESPACE": "-x"}, "BRANCHYARD_KUBE_INGRESS_NAMESPACE: expected a namespace name, got '-x'"),
    ({"BRANCHYARD_KUBE_RUNTIME_IMAGE": "python 3.11"}, "BRANCHYARD_KUBE_RUNTIME_IMAGE: expected an image reference"),
    ({"BRANCHYARD_KUBE_CONTROL_URL": "https://u:p@deploy.example.com"}, "a URL with credentials (not shown)"),
    ({"BRANCHYARD_KUBE_CONTROL_URL": "deploy.example.com/x"}, "BRANCHYARD_KUBE_CONTROL_URL: expected an http(s)://"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(BadInput) as err:
        settings_module.load({"BRANCHYARD_HOME": "/x"} | env)
    assert message in str(err.value)
    assert "u:p" not in str(err.value)


@pytest.mark.parametrize(("env", "url"), [
    ({}, "http://branchyard.branchyard.svc.cluster.local"),
    ({"BRANCHYARD_KUBE_CONTROL_NAMESPACE": "ops"}, "http://branchyard.ops.svc.cluster.local"),
    ({"BRANCHYARD_PUBLIC_URL": "https://deploy.example.com"}, "https://deploy.example.com"),
    ({"BRANCHYARD_PUBLIC_URL": "https://deploy.example.com", "BRANCHYARD_KUBE_CONTROL_URL": "http://10.0.0.5:8000"},
     "http://10.0.0.5:8000"),
])
def test_where_pods_reach_the_control_plane(env, url):
    s = settings_module.load({"BRANCHYARD_HOME": "/x"} | env)
    assert s.kubernetes.pods_reach_control_plane_at(s.control_url) == url


def test_render_infers_the_start_command_a_build_would(tmp_path):
    """An app whose files name no start command (issue 8): the manifests run what the build would infer."""
    (tmp_path / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    (tmp_path / "requirements.txt").write_text("fastapi\n")
    docs = list(yaml.safe_load_all(run("-e", "production", "--path", str(tmp_path)).output))
    web = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "web")
    assert web["spec"]["template"]["spec"]["containers"][0]["command"][2].startswith("uvicorn main:app --host 0.0.0.0")
