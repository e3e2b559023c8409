"""The data jobs' own scripts (backends/kubernetes/data_jobs.py), run here as a pod would run them: a real
PostgreSQL, the control plane's real transfer routes (api/routes/releases.py) over HTTP, and the Job's environment
with its Secret references resolved as the kubelet would. The fake-cluster suite plays these jobs; this proves what
they do: the dump arrives whole, the restore replaces the database in one transaction, and a wrong digest or token
changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import uvicorn
from conftest import free_port, new_home, wait_for
from fakes.kube_api import FakeKube
from fakes.kube_autopilot import Autopilot
from fastapi import FastAPI

from branchyard import settings as settings_mod
from branchyard.api.routes import releases
from branchyard.backends.kubernetes import data_jobs
from branchyard.backends.kubernetes.cluster import Cluster
from branchyard.backends.kubernetes.data import ClusterDataServers, DataJobs
from branchyard.backends.local.postgres import Admin, LocalServer, pg_bin
from branchyard.data import refresh
from branchyard.data.dumps import DUMP_MAGIC, sha256_of
from branchyard.spec import Rule, SanitizeSpec
from branchyard.transfers import Transfers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Admin, object]]:
    base = Path(tempfile.mkdtemp(prefix="branchyard-kjobs-"))
    server = LocalServer(data_dir=base / "pg")
    try:
        server.ensure_running()
        admin = Admin(server.admin_url())
        db = admin.create_database("kube_jobs", "kube_jobs")
        yield admin, db
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def control() -> Iterator[tuple[str, Transfers]]:
    """The control plane's transfer routes, served for real."""
    transfers = Transfers()
    app = FastAPI()
    app.include_router(releases.router(SimpleNamespace(transfers=transfers)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}", transfers
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def place(db) -> data_jobs.DatabasePlace:
    return data_jobs.DatabasePlace(project="shop", environment="production", namespace="branchyard-shop-production",
                                   image="postgres:18-alpine", user=db.user, database=db.name)


def run_job(objects: list[dict], db, tmp: Path, *, token: str | None = None) -> subprocess.CompletedProcess:
    """Run the Job's container as the kubelet would: its command, its env with secretKeyRefs resolved (the
    `postgres` Secret's password, the transfer Secret's token), its server reached here instead of at `postgres`."""
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects if o["kind"] == "Secret"}
    if token is not None:
        secrets = {k: ({"token": token} if k.startswith("transfer-") else v) for k, v in secrets.items()}
    return run_container(next(o for o in objects if o["kind"] == "Job"), secrets, db, tmp)


def run_container(job: dict, secrets: dict[str, dict[str, str]], db, tmp: Path) -> subprocess.CompletedProcess:
    secrets = secrets | {"postgres": {"POSTGRES_PASSWORD": db.password}}
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": f"{Path(pg_bin('psql')).parent}:/usr/bin:/bin", "TMPDIR": str(tmp), "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1", "LANG": "C.UTF-8"}
    for e in container["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = secrets[ref["name"]][ref["key"]] if ref else e["value"]
    env |= {"PGHOST": db.host, "PGPORT": str(db.port)}
    return subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=120)


def rows(db, sql_text: str) -> list[tuple]:
    with psycopg.connect(db.url, autocommit=True) as conn:
        cursor = conn.execute(sql_text)
        return cursor.fetchall() if cursor.description else []


def dump(db, control, tmp: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """A dump job's script run against `db`, uploading through a transfer opened (and closed) for it."""
    url, transfers = control
    dumped = tmp / "backup.dump"
    upload = transfers.expect_upload(dumped)
    done = run_job(data_jobs.dump_job(place(db), upload.id, f"{url}/internal/transfers/{upload.id}", upload.token),
                   db, tmp)
    transfers.close(upload)
    return dumped, done


def test_a_dump_job_uploads_and_a_restore_job_brings_it_back_whole(database, control, tmp_path):
    _, db = database
    url, transfers = control
    rows(db, "CREATE TABLE songs (id int PRIMARY KEY, title text); INSERT INTO songs VALUES (1, 'first'), (2, 'second')")
    dumped, done = dump(db, control, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "uploaded" in done.stdout
    assert dumped.read_bytes().startswith(DUMP_MAGIC) and oct(dumped.stat().st_mode & 0o777) == "0o600"

    rows(db, "DELETE FROM songs WHERE id = 2; CREATE TABLE added_later (x int)")
    download = transfers.offer_download(dumped)
    job = data_jobs.restore_job(place(db), download.id, f"{url}/internal/transfers/{download.id}", download.token,
                                sha256_of(dumped))
    done = run_job(job, db, tmp_path)
    assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT id, title FROM songs ORDER BY id") == [(1, "first"), (2, "second")]
    assert rows(db, "SELECT to_regclass('public.added_later')") == [(None,)]  # replaced whole, not merged
    assert rows(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'songs'") == [(db.user,)]
    transfers.close(download)


def test_a_restore_with_a_wrong_digest_or_token_changes_nothing(database, control, tmp_path):
    _, db = database
    url, transfers = control
    rows(db, "DROP TABLE IF EXISTS songs; CREATE TABLE songs (id int PRIMARY KEY); INSERT INTO songs VALUES (7)")
    dumped, done = dump(db, control, tmp_path)
    assert done.returncode == 0, done.stderr
    rows(db, "INSERT INTO songs VALUES (8)")

    download = transfers.offer_download(dumped)
    job = data_jobs.restore_job(place(db), download.id, f"{url}/internal/transfers/{download.id}", download.token,
                                "0" * 64)
    done = run_job(job, db, tmp_path)
    assert done.returncode != 0 and "not restored" in done.stderr
    job = data_jobs.restore_job(place(db), download.id, f"{url}/internal/transfers/{download.id}", download.token,
                                sha256_of(dumped))
    assert run_job(job, db, tmp_path, token="not-the-token").returncode != 0  # 403: wget fails, nothing restored
    transfers.close(download)
    assert run_job(job, db, tmp_path).returncode != 0  # a closed transfer opens nothing
    assert rows(db, "SELECT id FROM songs ORDER BY id") == [(7,), (8,)]


def test_an_upload_that_is_not_a_dump_is_refused_and_leaves_no_file(control, tmp_path):
    url, transfers = control
    target = tmp_path / "x.dump"
    upload = transfers.expect_upload(target)
    done = subprocess.run(["wget", "-q", "-O", "/dev/null", "--header", f"Authorization: Bearer {upload.token}",
                           "--post-data=not a dump", f"{url}/internal/transfers/{upload.id}"],
                          env=os.environ | {"no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}, timeout=60)
    assert done.returncode != 0
    assert not target.exists() and not list(tmp_path.glob(".*partial"))
    transfers.close(upload)


def test_a_refresh_between_namespaces_dumps_sanitizes_on_the_scratch_server_and_restores(database, control, tmp_path):
    """`db refresh staging --from production` on Kubernetes: a dump job in production's namespace, the raw copy
    sanitized in the control plane's own scratch server, a restore job in staging's — every job's script run for
    real by the autopilot, against real databases standing in for the namespaces' servers."""
    admin, _ = database
    url, transfers = control
    dbs = {"branchyard-shop-production": admin.create_database("shop_production", "shop_production"),
           "branchyard-shop-staging": admin.create_database("shop_staging", "shop_staging")}
    rows(dbs["branchyard-shop-production"], "CREATE TABLE users (id int PRIMARY KEY, email text, plan text); "
                                            "INSERT INTO users VALUES (1, 'ada@example.com', 'pro')")
    rows(dbs["branchyard-shop-staging"], "CREATE TABLE stale (x int)")
    home = new_home()  # as root, the scratch server runs as an unprivileged user: not under pytest's 0700 tree
    ran: list[str] = []

    def pod(namespace: str, job: dict) -> tuple[bool, list[str]]:
        ran.append(f"{namespace}/{job['metadata']['name'].split('-')[0]}")
        secrets = {name: fake.get("secrets", namespace, name)["stringData"]
                   for name in {e["valueFrom"]["secretKeyRef"]["name"]
                                for e in job["spec"]["template"]["spec"]["containers"][0]["env"] if "valueFrom" in e}
                   if name != "postgres"}
        workdir = tmp_path / f"pod-{len(ran)}"
        workdir.mkdir()
        done = run_container(job, secrets, dbs[namespace], workdir)
        return done.returncode == 0, (done.stdout + done.stderr).splitlines()

    with FakeKube() as fake, Autopilot(fake, data_jobs=pod).in_thread():
        settings = settings_mod.load({"BRANCHYARD_HOME": str(home), "BRANCHYARD_BACKEND": "kubernetes",
                                      "BRANCHYARD_KUBECONFIG": str(fake.kubeconfig(tmp_path / "kubeconfig"))})
        cluster = Cluster.connect(settings.kubernetes.kubeconfig)
        cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in dbs])
        servers = ClusterDataServers(settings, DataJobs(cluster, transfers, url, "postgres:18-alpine",
                                                        wait={"poll": 0.05}))
        source, _ = servers.database("shop", "production", {}, None)
        target, _ = servers.database("shop", "staging", {}, None)
        spec = SanitizeSpec(truncate=(), tables={"users": {"id": Rule("keep"), "email": Rule("mask_email"),
                                                                   "plan": Rule("keep")}})
        log: list[str] = []
        with servers.scratch() as scratch:
            refresh(source, "shop_production", target, "shop_staging", "shop_staging", spec,
                    workdir=home / "backups" / ".refresh", log=log.append, scratch_admin=scratch)
        cluster.close()
    assert ran == ["branchyard-shop-production/dump", "branchyard-shop-staging/restore"]
    staged = rows(dbs["branchyard-shop-staging"], "SELECT id, email, plan FROM users")
    assert staged[0][0] == 1 and staged[0][2] == "pro" and staged[0][1] != "ada@example.com"
    assert rows(dbs["branchyard-shop-staging"], "SELECT to_regclass('public.stale')") == [(None,)]
    assert any("scratch server" in line for line in log)
    assert not (home / "scratch-postgres").exists()  # the scratch server stopped, its data gone
    assert not list((home / "backups" / ".refresh").iterdir())  # no dump, raw or sanitized, left behind
    shutil.rmtree(home.parent, ignore_errors=True)
