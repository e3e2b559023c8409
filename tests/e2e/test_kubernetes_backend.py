"""BRANCHYARD_BACKEND=kubernetes, end to end through the real control plane and CLI, against the fake Kubernetes API
(tests/fakes/kube_api.py) whose controllers an autopilot thread plays (tests/fakes/kube_autopilot.py): nothing runs
the pods, so what is checked is what the control plane asks of the cluster and what it serves the pods — the
namespace and its objects, the variables snapshot in the release's own Secret, the release archive behind its token,
rollback and `variables set` reusing the archive, `run` as a Job whose output and exit code reach the CLI, the
preview-style teardown leaving nothing labelled behind.

tests/e2e/test_kubernetes_cluster.py runs the same flows against a real cluster (BRANCHYARD_TEST_KUBECONFIG).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from conftest import BRANCHYARD, free_port, new_home, start_plane, stop_plane, wait_for
from fakes.kube_api import FakeKube
from fakes.kube_autopilot import Autopilot
from kube_flows import PullRequest, project_repo

pytestmark = pytest.mark.integration
NS = "branchyard-yoto-staging"
SECRET = "kube-webhook-secret-5678"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with FakeKube() as fake, Autopilot(fake).in_thread() as pilot:
        yield fake, pilot, fake.kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")


@pytest.fixture(scope="module")
def kplane(cluster, venv_cache):
    _, _, config = cluster
    api_port = free_port()
    p = start_plane(new_home(), venv_cache, extra_env={
        "BRANCHYARD_BACKEND": "kubernetes", "BRANCHYARD_KUBECONFIG": str(config), "BRANCHYARD_API_PORT": str(api_port),
        "BRANCHYARD_KUBE_CONTROL_URL": f"http://127.0.0.1:{api_port}", "BRANCHYARD_GITHUB_WEBHOOK_SECRET": SECRET,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    p.control = f"http://127.0.0.1:{api_port}"
    p.api_url = p.json("server", "status")["api_url"]
    try:
        yield p
    finally:
        stop_plane(p)


@pytest.fixture(scope="module")
def repo(kplane, tmp_path_factory):
    return project_repo(kplane, tmp_path_factory.mktemp("app"), "yoto")


def secret_data(fake: FakeKube, name: str) -> dict[str, str]:
    obj = fake.get("secrets", NS, name)
    assert obj is not None, f"no Secret {NS}/{name}"
    return obj.get("stringData") or {}


def web_pod_spec(fake: FakeKube) -> dict:
    return fake.get("deployments", NS, "web")["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def applied(fake: FakeKube, namespace: str, plural: str, prefix: str) -> dict:
    """The first object of that kind and name prefix the control plane applied in the namespace (it may be gone)."""
    return next(json.loads(r.body) for r in fake.requests("PATCH")
                if r.path.startswith(f"/apis/batch/v1/namespaces/{namespace}/{plural}/{prefix}")
                or r.path.startswith(f"/api/v1/namespaces/{namespace}/{plural}/{prefix}"))


def test_a_push_deploys_an_environment_as_a_namespace(cluster, kplane, repo):
    fake, _, _ = cluster
    log = kplane.push_log
    assert "release archive" in log and "deployment SUCCESS" in log, log
    [dep] = kplane.json("deployments", "-e", "staging", cwd=repo)
    assert dep["status"] == "SUCCESS"

    ns = fake.get("namespaces", None, NS)
    assert ns["metadata"]["labels"]["branchyard.dev/environment"] == "staging"
    # the variables the control plane resolved, in this deployment's own Secret: the secret set with the CLI, the
    # database it provisioned (at postgres.<namespace>, with the password of the PostgreSQL Secret)
    variables = secret_data(fake, f"variables-{dep['id']}")
    assert variables["YOTO_CLIENT_SECRET"] == "staging-client-secret-value"
    password = secret_data(fake, "postgres")["POSTGRES_PASSWORD"]
    assert len(password) >= 24
    assert variables["DATABASE_URL"] == f"postgresql://by_yoto_staging:{password}@postgres.{NS}:5432/by_yoto_staging"
    assert variables["PORT"] == "8080" and variables["RAILWAY_GIT_COMMIT_SHA"] == dep["commit"]
    # hooks ran as Jobs before the rollout: migrate, then the seed (a new database)
    assert fake.get("jobs", NS, f"predeploy-{dep['id']}") and fake.get("jobs", NS, f"seed-{dep['id']}")
    assert fake.get("ingresses", NS, "web-yoto-staging-localhost")["spec"]["rules"][0]["host"] == "yoto-staging.localhost"


def test_pods_fetch_the_release_archive_with_their_token_only(cluster, kplane, repo):
    fake, _, _ = cluster
    fetch = env_of(web_pod_spec(fake)["initContainers"][0])
    url, digest = fetch["BRANCHYARD_RELEASE_URL"]["value"], fetch["BRANCHYARD_RELEASE_SHA256"]["value"]
    assert url.startswith(kplane.control + "/internal/releases/")
    token = secret_data(fake, fetch["BRANCHYARD_RELEASE_TOKEN"]["valueFrom"]["secretKeyRef"]["name"])["token"]
    assert httpx.get(url, timeout=30).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer not-it"}, timeout=30).status_code == 403
    answer = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200
    assert hashlib.sha256(answer.content).hexdigest() == digest
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as archive:
        names = set(archive.getnames())
        python = archive.getmember(".venv/bin/python3.11") if ".venv/bin/python3.11" in names else None
        cfg = archive.extractfile(".venv/pyvenv.cfg").read().decode()
    assert {"main.py", "manage.py", "requirements.txt"} <= names
    assert any(n.startswith(".venv/lib/python3.11/site-packages/fastapi/") or n.startswith(".deps/lib/python3.11/"
                                                                                         "site-packages/fastapi/")
               for n in names)
    assert "home = /usr/local/bin" in cfg
    assert python is None or python.linkname in ("/usr/local/bin/python3.11", "python3")


def test_the_init_containers_own_program_fetches_checks_and_unpacks_the_release(cluster, kplane, repo, tmp_path):
    """The program and environment of the rendered init container, run here as the pod would run them."""
    fake, _, _ = cluster
    init = web_pod_spec(fake)["initContainers"][0]
    env = {k: e["value"] for k, e in env_of(init).items() if "value" in e}
    token_ref = env_of(init)["BRANCHYARD_RELEASE_TOKEN"]["valueFrom"]["secretKeyRef"]
    env["BRANCHYARD_RELEASE_TOKEN"] = secret_data(fake, token_ref["name"])[token_ref["key"]]
    app = tmp_path / "app"
    app.mkdir()
    done = subprocess.run([sys.executable, *init["command"][1:]], env=env | {"BRANCHYARD_APP_DIR": str(app)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (app / "main.py").is_file() and not (app / ".release.tar.gz").exists()
    assert os.readlink(app / ".venv" / "bin" / "python3.11") == sys.executable  # the image's interpreter
    tampered = env | {"BRANCHYARD_RELEASE_SHA256": "0" * 64, "BRANCHYARD_APP_DIR": str(tmp_path)}
    refused = subprocess.run([sys.executable, *init["command"][1:]], env=tampered, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0 and "expected " + "0" * 64 in refused.stderr


def test_variables_set_and_rollback_reuse_the_archive_with_their_own_snapshot(cluster, kplane, repo):
    fake, _, _ = cluster
    first = kplane.json("deployments", "-e", "staging", cwd=repo)[0]
    digest = env_of(web_pod_spec(fake)["initContainers"][0])["BRANCHYARD_RELEASE_SHA256"]["value"]
    kplane.run("variables", "set", "-e", "staging", "FEATURE_X=on", cwd=repo)
    second = kplane.json("deployments", "-e", "staging", cwd=repo)[0]
    assert second["id"] != first["id"] and second["status"] == "SUCCESS"
    assert secret_data(fake, f"variables-{second['id']}")["FEATURE_X"] == "on"
    assert fake.get("jobs", NS, f"predeploy-{second['id']}") is None  # a variables change migrates nothing
    spec = web_pod_spec(fake)
    assert spec["containers"][0]["envFrom"] == [{"secretRef": {"name": f"variables-{second['id']}"}}]
    assert env_of(spec["initContainers"][0])["BRANCHYARD_RELEASE_SHA256"]["value"] == digest  # not rebuilt

    # a new commit: a new release, its own archive, migrated again
    (repo / "VERSION").write_text("2\n")
    kplane.commit(repo, "v2")
    kplane.git(repo, "push", "branchyard", "develop")
    third = kplane.json("deployments", "-e", "staging", cwd=repo)[0]
    v2_digest = env_of(web_pod_spec(fake)["initContainers"][0])["BRANCHYARD_RELEASE_SHA256"]["value"]
    assert v2_digest != digest and fake.get("jobs", NS, f"predeploy-{third['id']}") is not None
    assert fake.get("secrets", NS, f"variables-{first['id']}") is None  # neither current nor the one before: pruned

    # rollback: the earlier release (the variables change's deployment of it), its archive as it was, no rebuild
    kplane.run("rollback", "-e", "staging", cwd=repo)
    fourth = kplane.json("deployments", "-e", "staging", cwd=repo)[0]
    assert fourth["trigger"] == "rollback" and fourth["status"] == "SUCCESS"
    assert secret_data(fake, f"variables-{fourth['id']}")["FEATURE_X"] == "on"  # that deployment's snapshot
    assert env_of(web_pod_spec(fake)["initContainers"][0])["BRANCHYARD_RELEASE_SHA256"]["value"] == digest
    assert fake.get("jobs", NS, f"predeploy-{fourth['id']}") is None  # a rollback migrates nothing


def test_status_scale_down_and_up_drive_the_deployments_replicas(cluster, kplane, repo):
    fake, _, _ = cluster
    status = kplane.json("status", "-e", "staging", cwd=repo)
    assert status["status"] == "SUCCESS" and status["replicas"] == []  # no local process: pods
    web = [p for p in status["pods"] if p["service"] == "web"]
    assert web and all(p["ready"] for p in web)
    assert {p["service"] for p in status["pods"]} >= {"web", "postgres", "redis"}
    assert status["isolation"]["by"] == "kubernetes"

    kplane.run("scale", "web=3", "-e", "staging", cwd=repo)
    assert fake.get("deployments", NS, "web")["spec"]["replicas"] == 3
    assert fake.get("deployments", NS, "worker-worker")["spec"]["replicas"] == 1
    kplane.run("scale", "worker=2", "-e", "staging", cwd=repo)
    assert fake.get("deployments", NS, "worker-worker")["spec"]["replicas"] == 2
    kplane.run("down", "-e", "staging", cwd=repo)
    assert fake.get("deployments", NS, "web")["spec"]["replicas"] == 0
    assert kplane.json("status", "-e", "staging", cwd=repo)["status"] == "SLEEPING"
    assert fake.get("deployments", NS, "worker-worker")["spec"]["replicas"] == 0  # down stops the workers too
    kplane.run("up", "-e", "staging", cwd=repo)
    assert fake.get("deployments", NS, "web")["spec"]["replicas"] == 3  # the scale it had
    assert fake.get("deployments", NS, "worker-worker")["spec"]["replicas"] == 2
    assert kplane.json("status", "-e", "staging", cwd=repo)["status"] == "SUCCESS"


def test_what_the_pods_write_is_in_the_environments_logs(cluster, kplane, repo):
    fake, _, _ = cluster
    pods = [p for p in kplane.json("status", "-e", "staging", cwd=repo)["pods"] if p["service"] == "web"]

    def shipped():
        out = kplane.run("logs", "-e", "staging", "--json", cwd=repo).stdout
        return [json.loads(line) for line in out.splitlines() if "Started server process" in line]

    records = wait_for(shipped, timeout=60, interval=0.5)
    assert {r["service"] for r in records} == {"web", "worker"}  # the Procfile type's name, as on the local backend
    assert any(pods[0]["name"] in r["message"] and r["service"] == "web" for r in records)
    assert len(records) == len({r["message"] for r in records})  # each line once, however often the cluster is asked


def test_promotion_runs_stagings_archive_in_productions_namespace(cluster, kplane, repo):
    fake, _, _ = cluster
    staging = env_of(web_pod_spec(fake)["initContainers"][0])["BRANCHYARD_RELEASE_SHA256"]["value"]
    kplane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo)
    deployment = kplane.json("deployments", "-e", "production", cwd=repo)[0]
    assert deployment["trigger"] == "promote" and deployment["status"] == "SUCCESS"
    prod = fake.get("deployments", "branchyard-yoto-production", "web")["spec"]
    assert prod["replicas"] == 2
    assert env_of(prod["template"]["spec"]["initContainers"][0])["BRANCHYARD_RELEASE_SHA256"]["value"] == staging
    variables = fake.get("secrets", "branchyard-yoto-production", f"variables-{deployment['id']}")["stringData"]
    assert variables["YOTO_CLIENT_SECRET"] == "production-client-secret-value"  # production's own, never staging's
    assert "branchyard-yoto-production:5432" in variables["DATABASE_URL"]
    quota = fake.get("resourcequotas", "branchyard-yoto-production", "environment")["spec"]["hard"]
    # the seed's production sizes, plus the worker (1 + 1 rolling, 1 GB each) and one on-demand pod (a `run`: 1 GB)
    assert quota["limits.memory"] == "9984Mi"


def test_backup_and_restore_run_as_jobs_in_the_namespace_through_one_time_transfers(cluster, kplane, repo):
    fake, pilot, _ = cluster
    prod = "branchyard-yoto-production"
    said = kplane.run("backup", "-e", "production", cwd=repo).stdout
    uploaded = [body for ns, body in pilot.dumped if ns == prod][-1]
    backup = kplane.json("backup", "list", "-e", "production", cwd=repo)[0]
    assert backup["kind"] == "manual" and backup["size"] == len(uploaded) and backup["id"] in said
    assert backup["sha256"] == hashlib.sha256(uploaded).hexdigest()
    dump_job = applied(fake, prod, "jobs", "dump-")
    container = dump_job["spec"]["template"]["spec"]["containers"][0]
    assert "valueFrom" in env_of(container)["BRANCHYARD_TRANSFER_TOKEN"]  # the token is in a Secret, not the spec
    kplane.run("restore", backup["id"], "-e", "production", "--yes", cwd=repo)
    assert pilot.restored[-1] == (prod, uploaded)  # the very bytes backed up, checked against their sha256
    left = [name for (_, plural, ns, name) in fake.objects if ns == prod and plural in ("jobs", "secrets")
            and name.startswith(("dump-", "restore-", "transfer-"))]
    assert left == []  # each job and its token's Secret deleted once done
    # a transfer is closed once its job ended: its token opens nothing any more
    token = applied(fake, prod, "secrets", "transfer-")["stringData"]["token"]
    transfer = dump_job["metadata"]["name"].removeprefix("dump-")
    answer = httpx.post(f"{kplane.control}/internal/transfers/{transfer}", content=b"PGDMP again",
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403
    # production's database is backed up before its migrations run again (a promotion with a preDeployCommand)
    kplane.run("promote", "staging", "production", "--confirm", "PROMOTE", cwd=repo)
    kinds = [b["kind"] for b in kplane.json("backup", "list", "-e", "production", cwd=repo)]
    assert kinds[0] == "pre-deploy" and len(pilot.dumped) >= 2


def test_run_is_a_job_of_the_namespace_whose_output_and_exit_code_are_the_clis(cluster, kplane, repo):
    """`branchyard run -e production -- python -c …` against a local control plane: a Job from production's current
    release (the autopilot runs `python -c` for real, in the pod's environment, a line per step), its output printed,
    its exit code the CLI's, and the Job gone once it ended."""
    fake, _, _ = cluster
    prod = "branchyard-yoto-production"
    current = kplane.json("deployments", "-e", "production", cwd=repo)[0]["id"]
    code = ("import os, sys; print('hello from', os.environ['RAILWAY_ENVIRONMENT_NAME'], flush=True); "
            "print('$(POD_NAME) $$HOME', os.environ['VIRTUAL_ENV']); sys.exit(3)")
    done = kplane.run("run", "-e", "production", "--", "python", "-c", code, cwd=repo, check=False)
    assert (done.returncode, done.stdout) == (3, "hello from production\n$(POD_NAME) $$HOME /app/.venv\n"), done.stderr
    job = applied(fake, prod, "jobs", "run-")
    name, pod = job["metadata"]["name"], job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["python", "-c", code.replace("$", "$$")]  # argv, escaped from $(…)
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": f"variables-{current}"}}]
    assert job["spec"]["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert fake.get("jobs", prod, name) is None  # deleted before the CLI heard the exit code
    wait_for(lambda: not [p for (_, plural, ns, p) in fake.objects if plural == "pods" and ns == prod
                          and p.startswith(name)], timeout=30, interval=0.2)

    missing = kplane.run("run", "-e", "production", "--", "manage-it", "--now", cwd=repo, check=False)
    assert missing.returncode == 128
    assert 'exec: "manage-it": executable file not found in $PATH' in missing.stdout


def test_the_cli_going_away_deletes_the_run_job(cluster, kplane, repo):
    fake, _, _ = cluster
    prod = "branchyard-yoto-production"
    before = {r.path for r in fake.requests("PATCH") if "/jobs/run-" in r.path}
    cli = subprocess.Popen([*BRANCHYARD, "run", "-e", "production", "--", "python", "-c", "for i in range(900): print(i)"],
                           cwd=repo, env=kplane.env, stdout=subprocess.PIPE, text=True)
    try:
        assert cli.stdout.readline() == "0\n"  # it runs (a line per autopilot step: 45 s in all)
    finally:
        cli.kill()
        cli.wait(10)
    [path] = {r.path for r in fake.requests("PATCH") if "/jobs/run-" in r.path} - before
    name = path.rsplit("/", 1)[1]
    wait_for(lambda: fake.get("jobs", prod, name) is None, timeout=20, interval=0.1)
    assert any(r.path.endswith(f"/jobs/{name}") for r in fake.requests("DELETE"))


def test_a_pull_request_gets_a_namespace_and_closing_it_leaves_nothing(cluster, kplane, repo, tmp_path):
    fake, _, _ = cluster
    pr = PullRequest(kplane, repo, "yoto", SECRET, tmp_path)
    assert pr.open() == 202
    pr_ns = "branchyard-yoto-pr-12"
    wait_for(lambda: fake.get("ingresses", pr_ns, "web-yoto-pr-12-localhost"), timeout=300, interval=0.5)
    labels = fake.get("namespaces", None, pr_ns)["metadata"]["labels"]
    assert (labels["branchyard.dev/pull-request"], labels["branchyard.dev/ephemeral"]) == ("12", "true")
    assert fake.get("statefulsets", pr_ns, "redis") is None  # the pr template has no Redis
    # `add --plugin redis`: its server in the namespace at once (as a local one starts), its password in a Secret
    kplane.run("add", "--plugin", "redis", "-e", "pr-12", cwd=repo)
    assert fake.get("statefulsets", pr_ns, "redis")["status"]["readyReplicas"] == 1
    assert fake.get("secrets", pr_ns, "redis")["stringData"]["REDIS_PASSWORD"]
    assert pr.close() == 202
    wait_for(lambda: fake.get("namespaces", None, pr_ns) is None, timeout=120, interval=0.5)
    left = [key for key, obj in fake.objects.items()
            if (obj.get("metadata", {}).get("labels") or {}).get("branchyard.dev/environment") == "pr-12"]
    assert left == []


def test_deleting_the_environment_deletes_its_namespace_and_leaves_nothing(cluster, kplane, repo):
    fake, _, _ = cluster
    kplane.run("environment", "delete", "staging", "--yes", cwd=repo)
    assert fake.get("namespaces", None, NS) is None
    left = [key for key, obj in fake.objects.items()
            if (obj.get("metadata", {}).get("labels") or {}).get("branchyard.dev/environment") == "staging"]
    assert left == []
    assert not list(Path(kplane.home, "releases").glob("*.tar.gz"))  # its release archives went with it
    assert "staging" not in [e["name"] for e in json.loads(kplane.run("environment", "list", "--json", cwd=repo).stdout)]


def test_deleting_production_takes_its_final_backup_first(cluster, kplane, repo):
    fake, pilot, _ = cluster
    before = len(pilot.dumped)
    kplane.run("environment", "delete", "production", "--confirm", "production", cwd=repo)
    assert fake.get("namespaces", None, "branchyard-yoto-production") is None
    assert pilot.dumped[before][0] == "branchyard-yoto-production"  # dumped before the namespace went
    finals = [p for p in Path(kplane.home, "backups", "yoto", "production").glob("*.dump")]
    assert finals, "the final backup's file is kept after the environment is gone"
