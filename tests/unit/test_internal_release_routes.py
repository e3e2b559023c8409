"""The routes a Kubernetes environment's pods call (api/routes/releases.py), over the real app, store and Backups:
the release archive behind its own token, the backup upload behind the environment's, and the tokens themselves.

Every refusal is checked for what it leaves behind too: a 403, 400 or 413 upload stores no row and no file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import shutil
from pathlib import Path

import pytest
from api_users import Recorder, single_token
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from branchyard import internal_auth
from branchyard.api.app import create_app
from branchyard.api.routes import releases
from branchyard.build.archive import archive_path
from branchyard.controller.backups import Backups
from branchyard.errors import BadInput
from branchyard.store import models as m
from branchyard.store.db import Store
from branchyard.transfers import Transfers

ARCHIVE = b"\x1f\x8b\x08\x00 not really gzip, but these exact bytes" * 100
DUMP = b"PGDMP\x01\x0e\x00" + bytes(range(256)) * 40


class World:
    """A store with project yoto (production, staging), deployments with and without an archive, and the app."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.store = Store(home / "state.db")
        self.backups = Backups(self.store, data=None, root=home / "backups")  # type: ignore[arg-type]  # receive needs none
        with self.store.session() as s:
            p = m.Project(name="yoto", repo_path=str(home / "yoto.git"))
            s.add(p)
            s.flush()
            env = m.Environment(project_id=p.id, name="production", production=True)
            s.add_all([env, m.Environment(project_id=p.id, name="staging")])
            s.flush()
            self.deployments = {}
            for name, release_dir in (("built", home / "releases" / "d1"), ("missing", home / "releases" / "d2"),
                                      ("unbuilt", None)):
                d = m.Deployment(project_id=p.id, environment_id=env.id, status=m.SUCCESS, commit_sha="abc",
                                 trigger="push", release_dir=str(release_dir) if release_dir else None)
                s.add(d)
                s.flush()
                self.deployments[name] = d.id
        archive = archive_path(home / "releases" / "d1")
        archive.parent.mkdir(parents=True)
        archive.write_bytes(ARCHIVE)
        ctl = Recorder([])
        ctl.settings, ctl.store, ctl.backups = _Settings(home), self.store, self.backups
        self.transfers = ctl.transfers = Transfers()
        self.client = TestClient(create_app(ctl, gatekeeper=single_token("user-token"), dashboard=False))

    def stored(self) -> tuple[int, list[Path]]:
        """(backup rows, dump files): what an upload left behind, complete or not."""
        with self.store.session() as s:
            rows = s.scalar(select(func.count()).select_from(m.Backup))
        root = self.home / "backups"
        return rows, sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class _Settings:
    def __init__(self, home: Path) -> None:
        self.home = home


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    w = World(tmp_path_factory.mktemp("home"))
    yield w
    w.store.close()


@pytest.fixture
def world(shared: World):
    """The module's world, its backups forgotten after each test (so each starts with none)."""
    yield shared
    with shared.store.session() as s:
        s.execute(delete(m.Backup))
    shutil.rmtree(shared.home / "backups", ignore_errors=True)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def release_url(deployment_id: str) -> str:
    return f"/internal/releases/{deployment_id}.tar.gz"


# --- the tokens ------------------------------------------------------------------------------------

def test_tokens_are_derived_per_home_and_subject(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    token = internal_auth.release_token(a, "d1")
    assert (a / internal_auth.CLUSTER_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert internal_auth.release_token(a, "d1") == token and len(token) == 64  # recomputed, not stored
    assert internal_auth.backup_token(a, "yoto", "staging") == internal_auth.backup_token(a, "yoto", "staging")
    made = {
        token,
        internal_auth.release_token(a, "d2"),
        internal_auth.release_token(b, "d1"),  # another home: another key
        internal_auth.backup_token(a, "yoto", "staging"),
        internal_auth.backup_token(a, "yoto", "production"),
        internal_auth.backup_token(a, "yoto-staging", ""),
        internal_auth.backup_token(b, "yoto", "staging"),
    }
    assert len(made) == 7


def test_each_token_signs_its_kind_and_subject(tmp_path: Path) -> None:
    # the kind is signed too: a one-part token of another kind (a future one) can never equal a release token
    key = internal_auth.home_secret(tmp_path, internal_auth.CLUSTER_KEY_FILE).encode()
    assert internal_auth.release_token(tmp_path, "d1") == hmac.new(key, b"release\0d1", hashlib.sha256).hexdigest()
    assert (internal_auth.backup_token(tmp_path, "yoto", "pr-3")
            == hmac.new(key, b"backup\0yoto\0pr-3", hashlib.sha256).hexdigest())


def test_a_subject_with_a_nul_byte_gets_no_token(tmp_path: Path) -> None:
    # ("a\0b", "c") and ("a", "b\0c") would sign the same message
    with pytest.raises(ValueError, match="NUL"):
        internal_auth.backup_token(tmp_path, "a\0b", "c")


@pytest.mark.parametrize(("release_dir", "archive"), [
    ("/h/releases/abc123", Path("/h/releases/abc123.tar.gz")),
    ("/h/releases/abc123/", Path("/h/releases/abc123.tar.gz")),
    (Path("rel/x.y"), Path("rel/x.y.tar.gz")),
])
def test_archive_path(release_dir: str | Path, archive: Path) -> None:
    assert archive_path(release_dir) == archive


# --- GET /internal/releases/{id}.tar.gz ------------------------------------------------------------

def test_the_release_token_fetches_the_archive(world: World) -> None:
    built = world.deployments["built"]
    answer = world.client.get(release_url(built), headers=bearer(internal_auth.release_token(world.home, built)))
    assert answer.status_code == 200 and answer.content == ARCHIVE
    assert answer.headers["content-type"] == "application/gzip" and answer.headers["cache-control"] == "no-store"
    assert releases.DIGEST_HEADER not in answer.headers  # no digest recorded beside the archive


def test_the_recorded_digest_is_sent_along(world: World) -> None:
    built = world.deployments["built"]
    sidecar = archive_path(world.home / "releases" / "d1").with_name("d1.tar.gz.sha256")
    sidecar.write_text(hashlib.sha256(ARCHIVE).hexdigest() + "\n")
    try:
        answer = world.client.get(release_url(built), headers=bearer(internal_auth.release_token(world.home, built)))
        sidecar.write_text("not a digest\n")
        garbled = world.client.get(release_url(built), headers=bearer(internal_auth.release_token(world.home, built)))
    finally:
        sidecar.unlink()
    assert answer.headers[releases.DIGEST_HEADER] == hashlib.sha256(ARCHIVE).hexdigest() and answer.content == ARCHIVE
    assert garbled.status_code == 200 and releases.DIGEST_HEADER not in garbled.headers


WRONG_RELEASE = {
    "no header": lambda w: {},
    "empty bearer": lambda w: {"authorization": "Bearer "},
    "wrong token": lambda w: bearer("0" * 64),
    "another deployment's token": lambda w: bearer(internal_auth.release_token(w.home, w.deployments["missing"])),
    "the environment's backup token": lambda w: bearer(internal_auth.backup_token(w.home, "yoto", "production")),
    "a user's token": lambda w: bearer("user-token"),
    "token and more": lambda w: bearer(internal_auth.release_token(w.home, w.deployments["built"]) + "0"),
    "other scheme": lambda w: {"authorization": "Basic " + internal_auth.release_token(w.home, w.deployments["built"])},
}


@pytest.mark.parametrize("case", list(WRONG_RELEASE))
def test_a_wrong_release_token_gets_403_and_nothing_else(world: World, case: str) -> None:
    headers = WRONG_RELEASE[case](world)
    known = world.client.get(release_url(world.deployments["built"]), headers=headers)
    unknown = world.client.get(release_url("no-such-deployment"), headers=headers)
    for answer in (known, unknown):  # the same answer whether the id exists or not: nothing to probe
        assert (answer.status_code, answer.content, answer.headers["cache-control"]) == (403, b"", "no-store")


@pytest.mark.parametrize("which", ["missing", "unbuilt", "no-such-deployment"])
def test_no_archive_is_404_behind_the_right_token(world: World, which: str) -> None:
    deployment_id = world.deployments.get(which, which)
    answer = world.client.get(release_url(deployment_id), headers=bearer(internal_auth.release_token(world.home, deployment_id)))
    assert answer.status_code == 404
    assert answer.json() == {"detail": f"no release archive for deployment {deployment_id!r}", "error": "NotFound"}


def test_a_prefix_of_an_id_is_not_the_deployment(world: World) -> None:
    prefix = world.deployments["built"][:8]  # the store finds deployments by prefix elsewhere; a token is for one id
    answer = world.client.get(release_url(prefix), headers=bearer(internal_auth.release_token(world.home, prefix)))
    assert answer.status_code == 404


# --- POST /internal/backups/{project}/{environment} ------------------------------------------------

def upload(world: World, body: bytes, token: str, env: str = "staging"):
    return world.client.post(f"/internal/backups/yoto/{env}", content=body,
                             headers=bearer(token) | {"content-type": "application/octet-stream"})


def test_an_upload_is_recorded_as_a_scheduled_backup(world: World) -> None:
    answer = upload(world, DUMP, internal_auth.backup_token(world.home, "yoto", "staging"))
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert (made["project"], made["environment"], made["kind"]) == ("yoto", "staging", "scheduled")
    assert (made["sha256"], made["size"]) == (hashlib.sha256(DUMP).hexdigest(), len(DUMP))
    assert world.backups.list("yoto", "staging") == [made] and world.backups.list("yoto", "production") == []
    rows, files = world.stored()
    assert rows == 1 and files == [world.home / "backups" / "yoto" / "staging" / f"{made['id']}.dump"]
    assert files[0].read_bytes() == DUMP and files[0].stat().st_mode & 0o777 == 0o600


WRONG_BACKUP = {
    "no header": lambda w: "",
    "wrong token": lambda w: "0" * 64,
    "another environment's token": lambda w: internal_auth.backup_token(w.home, "yoto", "production"),
    "another home's token": lambda w: internal_auth.backup_token(w.home / "elsewhere", "yoto", "staging"),
    "a release token": lambda w: internal_auth.release_token(w.home, w.deployments["built"]),
    "a user's token": lambda w: "user-token",
}


@pytest.mark.parametrize("case", list(WRONG_BACKUP))
def test_a_wrong_backup_token_gets_403_and_stores_nothing(world: World, case: str) -> None:
    answer = upload(world, DUMP, WRONG_BACKUP[case](world))
    assert (answer.status_code, answer.content) == (403, b"")
    assert world.stored() == (0, [])


def test_an_unknown_environment_is_403_without_its_token_and_404_with_it(world: World) -> None:
    assert upload(world, DUMP, "0" * 64, env="nowhere").status_code == 403
    answer = upload(world, DUMP, internal_auth.backup_token(world.home, "yoto", "nowhere"), env="nowhere")
    assert answer.status_code == 404 and answer.json()["error"] == "NotFound"
    assert world.stored() == (0, [])


@pytest.mark.parametrize("body", [b"", b"PGDM", b"PGDMX and the rest", b"\x1f\x8b gzip of a dump", b"-- plain SQL\n"])
def test_an_upload_that_is_not_a_custom_format_dump_is_refused(world: World, body: bytes) -> None:
    answer = upload(world, body, internal_auth.backup_token(world.home, "yoto", "staging"))
    assert answer.status_code == 400
    assert answer.json()["detail"] == "the upload is not a pg_dump custom-format file (it does not start with PGDMP)"
    assert world.stored() == (0, [])


def test_a_declared_length_over_the_limit_is_refused_before_reading(world: World, monkeypatch) -> None:
    monkeypatch.setattr(releases, "BACKUP_MAX_BODY", len(DUMP) - 1)
    answer = upload(world, DUMP, internal_auth.backup_token(world.home, "yoto", "staging"))
    assert answer.status_code == 413 and answer.json()["detail"] == f"backup upload over the limit of {len(DUMP) - 1} bytes"
    assert world.stored() == (0, [])


# --- streamed bodies (what TestClient cannot send: several chunks, no Content-Length) --------------

def post_chunks(world: World, path: str, token: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """POST the chunks as separate ASGI messages without a Content-Length; (status, body)."""
    app = world.client.app
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "client": ("10.0.0.9", 1),
             "server": ("testserver", 80), "headers": [(b"authorization", f"Bearer {token}".encode()),
                                                         (b"transfer-encoding", b"chunked")]}

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_a_streamed_upload_is_written_chunk_by_chunk(world: World) -> None:
    chunks = [DUMP[:2], DUMP[2:4], DUMP[4:1000], DUMP[1000:]]  # the magic split over three chunks
    status, body = post_chunks(world, "/internal/backups/yoto/staging",
                               internal_auth.backup_token(world.home, "yoto", "staging"), chunks)
    assert status == 201, body
    assert json.loads(body)["sha256"] == hashlib.sha256(DUMP).hexdigest()
    assert world.stored()[1][0].read_bytes() == DUMP


def test_a_streamed_upload_past_the_limit_is_413_and_leaves_nothing(world: World, monkeypatch) -> None:
    monkeypatch.setattr(releases, "BACKUP_MAX_BODY", 1000)
    status, body = post_chunks(world, "/internal/backups/yoto/staging",
                               internal_auth.backup_token(world.home, "yoto", "staging"), [DUMP[:600], DUMP[600:1200]])
    assert (status, json.loads(body)["error"]) == (413, "PayloadTooLarge")
    assert world.stored() == (0, [])


# --- Backups.receive --------------------------------------------------------------------------------

@pytest.mark.parametrize(("chunks", "accepted"), [
    ([b"P", b"G", b"D", b"M", b"P", b"rest"], True),
    ([b"", b"PGDMP"], True),
    ([b"PG", b"DMX"], False),
    ([b"PGD"], False),
    ([], False),
])
def test_receive_checks_the_magic_across_chunks(world: World, chunks: list[bytes], accepted: bool) -> None:
    if accepted:
        made = world.backups.receive("yoto", "staging", iter(chunks))
        assert made["size"] == sum(map(len, chunks)) and world.stored()[0] == 1
    else:
        with pytest.raises(BadInput):
            world.backups.receive("yoto", "staging", iter(chunks))
        assert world.stored() == (0, [])


def test_receive_reads_a_file_like_body(world: World, tmp_path: Path) -> None:
    source = tmp_path / "backup.dump"
    source.write_bytes(DUMP)
    with source.open("rb") as f:
        made = world.backups.receive("yoto", "production", f, kind="manual")
    assert (made["kind"], made["sha256"]) == ("manual", hashlib.sha256(DUMP).hexdigest())


def test_receive_leaves_nothing_when_the_body_fails_midway(world: World) -> None:
    def body():
        yield DUMP[:100]
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        world.backups.receive("yoto", "staging", body())
    assert world.stored() == (0, [])


# --- a data job's one-time transfers (POST/GET /internal/transfers/{id}) --------------------------------------------


def test_an_upload_with_its_transfers_token_is_written_whole_once(world: World, tmp_path: Path) -> None:
    target = tmp_path / "in.dump"
    t = world.transfers.expect_upload(target)
    answer = world.client.post(f"/internal/transfers/{t.id}", content=DUMP, headers=bearer(t.token))
    assert answer.status_code == 201
    assert answer.json() == {"sha256": hashlib.sha256(DUMP).hexdigest(), "size": len(DUMP)}
    assert target.read_bytes() == DUMP and oct(target.stat().st_mode & 0o777) == "0o600"
    again = world.client.post(f"/internal/transfers/{t.id}", content=DUMP, headers=bearer(t.token))
    assert again.status_code == 400 and target.read_bytes() == DUMP  # never overwritten


@pytest.mark.parametrize("who", ["wrong", "user", "download", "closed", "unknown"])
def test_an_upload_without_its_own_open_transfers_token_is_refused_and_writes_nothing(world: World, tmp_path: Path,
                                                                                      who: str) -> None:
    target = tmp_path / "in.dump"
    t = world.transfers.expect_upload(target)
    other = world.transfers.offer_download(tmp_path / "elsewhere.dump")
    token = {"wrong": "x" * 43, "user": "user-token", "download": other.token}.get(who, t.token)
    transfer_id = {"download": other.id, "unknown": "0123456789ab"}.get(who, t.id)
    if who == "closed":
        world.transfers.close(t)
    answer = world.client.post(f"/internal/transfers/{transfer_id}", content=DUMP, headers=bearer(token))
    assert answer.status_code == 403 and answer.content == b""
    assert not target.exists() and not list(tmp_path.iterdir())


def test_an_upload_that_is_no_dump_leaves_no_file(world: World, tmp_path: Path) -> None:
    target = tmp_path / "in.dump"
    t = world.transfers.expect_upload(target)
    answer = world.client.post(f"/internal/transfers/{t.id}", content=b"SELECT 1;", headers=bearer(t.token))
    assert answer.status_code == 400 and "PGDMP" in answer.text
    assert not list(tmp_path.iterdir())  # nor a partial file


def test_a_download_serves_the_transfers_file_to_its_token_only(world: World, tmp_path: Path) -> None:
    source = tmp_path / "out.dump"
    source.write_bytes(DUMP)
    t = world.transfers.offer_download(source)
    assert world.client.get(f"/internal/transfers/{t.id}", headers=bearer("nope")).status_code == 403
    answer = world.client.get(f"/internal/transfers/{t.id}", headers=bearer(t.token))
    assert answer.status_code == 200 and answer.content == DUMP
    assert answer.headers["cache-control"] == "no-store"
    world.transfers.close(t)
    assert world.client.get(f"/internal/transfers/{t.id}", headers=bearer(t.token)).status_code == 403
