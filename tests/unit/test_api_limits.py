"""The API's limits (api/guard.py): wrong-token bursts get 429, over-limit bodies a readable 413; and the pure parts
of git over HTTP (api/git_http.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from api_users import single_token
from fastapi.testclient import TestClient

from branchyard.api import guard
from branchyard.api.app import create_app
from branchyard.api.git_http import cgi_environment, parse_cgi_headers, smart_request
from branchyard.api.guard import Throttle, basic_password, bearer, client_address
from branchyard.errors import TooManyRequests, Unauthorized

TOKEN = "the-right-token"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_counts_failures_in_a_sliding_window() -> None:
    clock = Clock()
    t = Throttle(failures=3, window=60, clock=clock)
    for _ in range(3):
        assert t.wait("a") == 0
        t.failed("a")
        clock.now += 10
    assert t.wait("a") == 30  # the first failure (at 1000) leaves the window at 1060; now is 1030
    assert t.wait("b") == 0  # another address is not affected
    clock.now = 1060.5
    assert t.wait("a") == 0  # one failure left the window: one more try
    t.failed("a")
    assert t.wait("a") == 10  # now the failure at 1010 is the oldest of three: free at 1070


def test_the_gate() -> None:
    clock = Clock()
    gate = single_token(TOKEN, throttle=Throttle(failures=2, window=60, clock=clock)).gate
    gate.check(TOKEN, "a")
    for _ in range(5):  # a missing token is not a guess (git asks without one first)
        with pytest.raises(Unauthorized):
            gate.check("", "a")
    gate.check(TOKEN, "a")  # right tokens never count
    for _ in range(2):
        with pytest.raises(Unauthorized):
            gate.check("wrong", "a")
    with pytest.raises(TooManyRequests) as err:
        gate.check("wrong", "a")
    assert err.value.retry_after == 60 and str(err.value) == "too many wrong tokens from a: try again in 60s"
    with pytest.raises(TooManyRequests):  # while throttled the token is not even compared
        gate.check(TOKEN, "a")
    gate.check(TOKEN, "b")
    clock.now += 61
    gate.check(TOKEN, "a")


@pytest.mark.parametrize(("header", "expected"), [
    (None, ""), ("", ""), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Bearer", ""), ("Token abc", ""),
    ("Basic " + base64.b64encode(b"git:abc").decode(), "abc"),
    ("Basic " + base64.b64encode(b":abc").decode(), "abc"),
    ("Basic " + base64.b64encode(b"abc").decode(), "\0"),  # present but no password: a wrong token, not a missing one
    ("Basic not-base64!", "\0"),
])
def test_basic_password(header, expected) -> None:
    assert basic_password(header) == expected


def test_bearer_takes_no_other_scheme() -> None:
    assert bearer("Basic " + base64.b64encode(b"git:abc").decode()) == ""


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("203.0.113.9", None, "203.0.113.9"),
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", b"198.51.100.7", "198.51.100.7"),  # behind the edge: the address it saw
    ("127.0.0.1", b"10.9.9.9, 198.51.100.7", "198.51.100.7"),  # the client's own claim (first) is not believed
    ("203.0.113.9", b"198.51.100.7", "203.0.113.9"),  # only the edge on loopback is believed
])
def test_client_address(peer, forwarded, expected) -> None:
    headers = [(b"x-forwarded-for", forwarded)] if forwarded else []
    assert client_address({"client": (peer, 1234), "headers": headers}) == expected


class Projects:
    def list(self) -> list:
        return []

    def create(self, *args: object, **kwargs: object) -> dict:
        return {"created": True}


class Controller:
    projects = Projects()


def test_wrong_token_bursts_get_429_over_http() -> None:
    app = create_app(Controller(), gatekeeper=single_token(TOKEN, throttle=Throttle(failures=3, window=60)))
    attacker = TestClient(app, client=("203.0.113.9", 4000))
    answers = [attacker.get("/api/projects", headers={"authorization": f"Bearer wrong-{i}"}) for i in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert answers[-1].headers["retry-after"] == "60"
    assert answers[-1].json() == {"detail": "too many wrong tokens from 203.0.113.9: try again in 60s",
                                  "error": "TooManyRequests"}
    git = attacker.get("/git/yoto.git/info/refs?service=git-upload-pack", headers={"authorization": "Basic eDp5"})
    assert git.status_code == 429 and git.headers["retry-after"] == "60"  # git's route shares the count
    user = TestClient(app, client=("198.51.100.7", 4000))
    assert user.get("/api/projects", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    # behind the edge (peer on loopback) each client is its forwarded address
    edge = TestClient(app, client=("127.0.0.1", 4000))
    assert edge.get("/api/projects", headers={"authorization": f"Bearer {TOKEN}",
                                              "x-forwarded-for": "198.51.100.8"}).status_code == 200
    assert edge.get("/api/projects", headers={"authorization": f"Bearer {TOKEN}",
                                              "x-forwarded-for": "203.0.113.9"}).status_code == 429


def test_git_without_a_token_asks_for_basic_credentials() -> None:
    client = TestClient(create_app(Controller(), gatekeeper=single_token(TOKEN)))
    answer = client.get("/git/yoto.git/info/refs?service=git-receive-pack")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Basic realm="branchyard"'
    assert answer.json() == {"detail": "missing or wrong API token", "error": "Unauthorized"}


class ProjectsWithARepo(Projects):
    def __init__(self, repo: Path) -> None:
        self.repo = repo

    def info(self, name: str) -> dict:
        return {"name": name, "repo_path": str(self.repo)}


@pytest.mark.parametrize(("role", "fetch", "push"), [("viewer", 200, 403), ("member", 200, 200), ("admin", 200, 200)])
def test_git_needs_read_to_fetch_and_deploy_to_push(tmp_path, role, fetch, push) -> None:
    import subprocess

    repo = tmp_path / "yoto.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    controller = type("C", (), {"projects": ProjectsWithARepo(repo)})()
    client = TestClient(create_app(controller, gatekeeper=single_token(TOKEN, role=role)))
    auth = {"authorization": "Basic " + base64.b64encode(f"x:{TOKEN}".encode()).decode()}
    fetched = client.get("/git/yoto.git/info/refs?service=git-upload-pack", headers=auth)
    assert fetched.status_code == fetch and b"# service=git-upload-pack" in fetched.content
    pushed = client.get("/git/yoto.git/info/refs?service=git-receive-pack", headers=auth)
    assert pushed.status_code == push
    if push == 403:  # before git runs: nothing of the repository is advertised
        assert pushed.json() == {"detail": "git: push to yoto: permission 'deploy' needs role member; tester is viewer",
                                 "error": "Forbidden"}
        refused = client.post("/git/yoto.git/git-receive-pack", headers=auth, content=b"0000")
        assert refused.status_code == 403
    else:
        assert b"# service=git-receive-pack" in pushed.content


OVER = {"detail": f"request body over the limit of {guard.API_MAX_BODY} bytes", "error": "PayloadTooLarge"}


def test_a_declared_over_limit_body_gets_413_before_the_route() -> None:
    client = TestClient(create_app(Controller(), gatekeeper=single_token(TOKEN)))
    body = b"{" + b" " * guard.API_MAX_BODY + b"}"
    answer = client.post("/api/projects", content=body, headers={"authorization": f"Bearer {TOKEN}",
                                                                 "content-type": "application/json"})
    assert (answer.status_code, answer.json()) == (413, OVER)
    assert client.post("/webhooks/github", content=body, headers={"content-type": "application/json"}).json() == OVER


def test_a_chunked_over_limit_body_gets_413_instead_of_the_routes_answer() -> None:
    client = TestClient(create_app(Controller(), gatekeeper=single_token(TOKEN)))

    def chunks():
        yield b'{"name": "'
        for _ in range(6):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    answer = client.post("/api/projects", content=chunks(), headers={"authorization": f"Bearer {TOKEN}",
                                                                     "content-type": "application/json"})
    assert (answer.status_code, answer.json()) == (413, OVER)


def test_bodies_under_the_limit_pass() -> None:
    client = TestClient(create_app(Controller(), gatekeeper=single_token(TOKEN)))
    answer = client.post("/api/projects", json={"name": "yoto"}, headers={"authorization": f"Bearer {TOKEN}"})
    assert answer.json() == {"created": True}


def test_git_has_a_limit_of_its_own() -> None:
    assert guard.limit_for("/git/yoto.git/git-receive-pack") == guard.GIT_MAX_BODY > guard.API_MAX_BODY
    assert guard.limit_for("/api/projects") == guard.limit_for("/webhooks/github") == guard.API_MAX_BODY


@pytest.mark.parametrize(("method", "rest", "query", "expected"), [
    ("GET", "info/refs", "service=git-upload-pack", "git-upload-pack"),
    ("GET", "info/refs", "service=git-receive-pack", "git-receive-pack"),
    ("POST", "git-upload-pack", "", "git-upload-pack"),
    ("POST", "git-receive-pack", "", "git-receive-pack"),
    ("GET", "info/refs", "", None),  # the dumb protocol
    ("GET", "HEAD", "", None),
    ("GET", "objects/info/packs", "", None),
    ("GET", "git-upload-pack", "", None),
    ("POST", "info/refs", "service=git-upload-pack", None),
    ("GET", "info/refs", "service=git-upload-archive", None),
])
def test_only_the_smart_protocol_is_served(method, rest, query, expected) -> None:
    assert smart_request(method, rest, query) == expected


def test_the_cgi_environment() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/root", "BRANCHYARD_GITHUB_TOKEN": "ghp_x", "BRANCHYARD_HOME": "/h"}
    env = cgi_environment(repo=Path("/h/repos/yoto.git"), rest="git-receive-pack", method="POST", query="",
                          headers={"content-type": "application/x-git-receive-pack-request", "content-encoding": "gzip",
                                   "git-protocol": "version=2", "authorization": "Basic secret"},
                          address="198.51.100.7", base=base)
    assert env == {
        "PATH": "/usr/bin", "HOME": "/root", "BRANCHYARD_HOME": "/h",
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "GIT_PROJECT_ROOT": "/h/repos", "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": "/yoto.git/git-receive-pack",
        "REQUEST_METHOD": "POST", "QUERY_STRING": "", "REMOTE_USER": "branchyard", "REMOTE_ADDR": "198.51.100.7",
        "CONTENT_TYPE": "application/x-git-receive-pack-request", "HTTP_CONTENT_ENCODING": "gzip",
        "HTTP_GIT_PROTOCOL": "version=2",
    }  # neither the control plane's secrets nor the request's credentials reach git or the hook


def test_the_hook_acts_as_the_requests_user_never_as_the_control_planes_own_token() -> None:
    base = {"PATH": "/usr/bin", "BRANCHYARD_TOKEN": "the-control-planes-own", "BRANCHYARD_HOME": "/h"}
    common = dict(repo=Path("/h/repos/yoto.git"), rest="git-receive-pack", method="POST", query="", headers={},
                  address="198.51.100.7", base=base)
    assert cgi_environment(**common, token="alices-token")["BRANCHYARD_TOKEN"] == "alices-token"
    assert "BRANCHYARD_TOKEN" not in cgi_environment(**common)


def test_cgi_headers() -> None:
    raw = b"Status: 404 Not Found\r\nExpires: Fri, 01 Jan 1980 00:00:00 GMT\r\nContent-Type: text/plain\r\n"
    assert parse_cgi_headers(raw) == (404, [(b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"), (b"content-type", b"text/plain")])
    assert parse_cgi_headers(b"Content-Type: application/x-git-upload-pack-advertisement\r\n")[0] == 200
