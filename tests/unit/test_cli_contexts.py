"""Which control plane the CLI talks to (cli/contexts.py): the precedence table, the store, and the git credential
helper that answers from it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from branchyard.cli.contexts import ContextStore, Target, choose, config_dir, local_token, normalize_url
from branchyard.errors import BadInput

STORED = {"current": "prod", "contexts": {"prod": {"url": "https://deploy.example.com", "token": "tok-prod"},
                                          "lab": {"url": "http://10.0.0.5:8000", "token": "tok-lab"}}}
NONE_STORED = {"current": None, "contexts": {}}
CI = {"BRANCHYARD_URL": "https://ci.example.com/", "BRANCHYARD_TOKEN": "tok-ci"}

PRECEDENCE = [
    # (flag, env, stored, expected target name and URL; None: the machine's own control plane)
    ("nothing: the local control plane, as before", None, {}, NONE_STORED, None),
    ("a current stored context", None, {}, STORED, ("prod", "https://deploy.example.com")),
    ("the environment before the stored context", None, CI, STORED, ("BRANCHYARD_URL", "https://ci.example.com")),
    ("the environment without stored contexts", None, CI, NONE_STORED, ("BRANCHYARD_URL", "https://ci.example.com")),
    ("--context before the environment", "lab", CI, STORED, ("lab", "http://10.0.0.5:8000")),
    ("--context before the current one", "lab", {}, STORED, ("lab", "http://10.0.0.5:8000")),
    ("--context local: the machine's own", "local", CI, STORED, None),
    ("current 'local' means the machine's own", None, {}, {**STORED, "current": "local"}, None),
    ("no current context", None, {}, {**STORED, "current": None}, None),
    ("a token alone: the machine's own control plane, as that token's user", None, {"BRANCHYARD_TOKEN": "t"}, STORED,
     None),
    ("empty environment values count as unset", None, {"BRANCHYARD_URL": "", "BRANCHYARD_TOKEN": ""}, STORED,
     ("prod", "https://deploy.example.com")),
]


@pytest.mark.parametrize(("flag", "env", "stored", "expected"), [c[1:] for c in PRECEDENCE], ids=[c[0] for c in PRECEDENCE])
def test_precedence(flag, env, stored, expected) -> None:
    target = choose(flag, env, stored)
    assert (None if target is None else (target.name, target.url)) == expected


def test_the_machines_own_control_plane_takes_branchyard_token_when_set() -> None:
    assert local_token({"BRANCHYARD_TOKEN": " tok-alice \n"}) == "tok-alice"
    assert local_token({"BRANCHYARD_TOKEN": ""}) is None and local_token({}) is None  # then server.json's admin token


REFUSED = [
    ("unknown --context", "nope", {}, STORED,
     "--context nope: no such context (known: local, lab, prod); `branchyard login URL` adds one"),
    ("URL without token", None, {"BRANCHYARD_URL": "https://ci.example.com"}, STORED,
     "BRANCHYARD_TOKEN is not set: BRANCHYARD_URL needs the token of a user there"),
    ("a bad URL", None, {"BRANCHYARD_URL": "deploy.example.com", "BRANCHYARD_TOKEN": "t"}, STORED,
     "BRANCHYARD_URL: expected the control plane's http(s):// URL like https://deploy.example.com, got 'deploy.example.com'"),
    ("a current context that is gone", None, {}, {**STORED, "current": "old"},
     "the current context 'old' is not stored any more; `branchyard context use NAME` (known: local, lab, prod)"),
]


@pytest.mark.parametrize(("flag", "env", "stored", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refusals_are_one_line(flag, env, stored, message) -> None:
    with pytest.raises(BadInput) as err:
        choose(flag, env, stored)
    assert str(err.value) == message


def test_a_targets_token_is_not_in_its_repr() -> None:
    assert "tok-ci" not in repr(Target("x", "https://a", "tok-ci"))


@pytest.mark.parametrize(("env", "expected"), [
    ({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}, "/x/cfg/branchyard"),
    ({"HOME": "/h"}, "/h/.config/branchyard"),
    ({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}, "/h/.config/branchyard"),  # the XDG spec: relative is ignored
])
def test_config_dir(env, expected) -> None:
    assert str(config_dir(env)) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://Deploy.Example.com/", "https://deploy.example.com"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("https://example.com/branchyard/", "https://example.com/branchyard"),
])
def test_urls_are_normalized(raw, expected) -> None:
    assert normalize_url(raw) == expected


def test_a_url_with_credentials_is_refused_without_showing_them() -> None:
    with pytest.raises(BadInput) as err:
        normalize_url("https://me:s3cret@deploy.example.com", what="login")
    assert "s3cret" not in str(err.value) and str(err.value).startswith("login:")


def test_the_store_is_private_and_round_trips(tmp_path) -> None:
    store = ContextStore(tmp_path / "cfg" / "branchyard")
    assert store.load() == {"current": None, "contexts": {}}
    store.add("prod", "https://deploy.example.com", "tok-prod")
    store.add("lab", "http://10.0.0.5:8000", "tok-lab")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.load()["current"] == "lab"  # the last login is the current context
    store.use("prod")
    assert choose(None, {}, store.load()).name == "prod"
    store.use("local")
    assert choose(None, {}, store.load()) is None
    store.use("prod")
    store.remove("prod")
    assert store.load() == {"current": None, "contexts": {"lab": {"url": "http://10.0.0.5:8000", "token": "tok-lab"}}}
    with pytest.raises(BadInput, match="^context use: no context 'prod' \\(known: local, lab\\)$"):
        store.use("prod")
    with pytest.raises(BadInput, match="^logout: no context 'prod'"):
        store.remove("prod")


def test_a_damaged_store_is_one_line(tmp_path) -> None:
    store = ContextStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(BadInput, match="cannot read the stored contexts"):
        store.load()


@pytest.mark.parametrize("name", ["local", "", "-x", "a b", "a/b"])
def test_bad_context_names(tmp_path, name) -> None:
    with pytest.raises(BadInput, match="^context name"):
        ContextStore(tmp_path).add(name, "https://a", "t")


def test_contexts_for_a_url_match_scheme_host_and_port(tmp_path) -> None:
    store = ContextStore(tmp_path)
    store.add("a", "https://deploy.example.com", "tok-a")
    store.add("b", "https://deploy.example.com:443/", "tok-b")
    store.add("c", "http://deploy.example.com", "tok-c")
    store.use("b")
    assert [t.name for t in store.for_url("https://deploy.example.com")] == ["b", "a"]  # the current one first
    assert [t.name for t in store.for_url("http://deploy.example.com:80")] == ["c"]
    assert store.for_url("https://other.example.com") == []


def helper(action: str, asked: str, env: dict[str, str], module: str = "branchyard.cli.credential") -> str:
    args = [module, action] if module == "branchyard.cli.credential" else [module, "git-credential", action]
    done = subprocess.run([sys.executable, "-m", *args], input=asked,
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_git_credential_helper(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | {"XDG_CONFIG_HOME": str(tmp_path)}
    ContextStore(tmp_path / "branchyard").add("prod", "https://deploy.example.com", "tok-prod")
    asked = "protocol=https\nhost=deploy.example.com\npath=git/yoto.git\n\n"
    assert helper("get", asked, env) == "username=branchyard\npassword=tok-prod\n"
    assert helper("get", asked, env, module="branchyard.cli.main") == "username=branchyard\npassword=tok-prod\n"
    assert helper("get", asked.replace("deploy.", "other."), env) == ""  # no context for that host: git asks the user
    assert helper("get", asked.replace("https", "http"), env) == ""
    ci = env | {"BRANCHYARD_URL": "https://deploy.example.com", "BRANCHYARD_TOKEN": "tok-ci"}
    assert helper("get", asked, ci) == "username=branchyard\npassword=tok-ci\n"
    assert helper("store", asked + "username=x\npassword=y\n", env) == ""  # git keeps nothing
    assert json.loads((tmp_path / "branchyard" / "contexts.json").read_text())["contexts"]["prod"]["token"] == "tok-prod"


@pytest.mark.parametrize(("argv", "expected"), [
    (["status"], ["status"]),
    (["status", "--context", "prod", "-e", "staging"], ["--context", "prod", "status", "-e", "staging"]),
    (["--context", "prod", "status"], ["--context", "prod", "status"]),
    (["status", "--context=prod"], ["--context=prod", "status"]),
    (["run", "-e", "pr-1", "--", "tool", "--context", "x"], ["run", "-e", "pr-1", "--", "tool", "--context", "x"]),
    (["status", "--context"], ["status", "--context"]),  # no name: click says so
])
def test_context_is_taken_anywhere_before_a_double_dash(argv, expected) -> None:
    from branchyard.cli.main import context_anywhere

    assert context_anywhere(argv) == expected
