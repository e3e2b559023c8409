"""names.py: the sanitising boundary. Exact values, exact messages."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from branchyard.errors import NameRefused
from branchyard.names import (
    branch_environment,
    branch_from_ref,
    domain_name,
    environment_name,
    hostname,
    is_safe_git_ref,
    pr_environment,
    project_name,
    safe_join,
    scrub_credentials,
    slug,
)

LONG = "x" * 200
LONG_BRANCH = "feature/" + "a" * 192


def sha8(value: str) -> str:
    return hashlib.sha1(value.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("main", "main"),
        ("feature/Add_MQTT", "feature-add-mqtt"),
        ("Fix--Auth__Bug!!", "fix-auth-bug"),
        ("  spaced out  ", "spaced-out"),
        ("../../etc", "etc"),
        ("Café Über", "cafe-uber"),  # accents folded to ASCII
        ("İstanbul", "istanbul"),
        ("Ｆｕｌｌ１", "full1"),  # full-width letters and digits
        ("release/v1.2.0", "release-v1-2-0"),
        ("a" * 63, "a" * 63),  # exactly at the limit: untouched
        (LONG, "x" * 54 + "-94218caa"),
        ("feature/" + "a" * 60, "feature-" + "a" * 46 + "-" + sha8("feature/" + "a" * 60)),
    ],
)
def test_slug(value: str, expected: str) -> None:
    assert slug(value) == expected
    assert len(slug(value)) <= 63


def test_slug_hash_is_of_the_original_value_and_stable() -> None:
    assert sha8(LONG) == "94218caa"
    assert slug("X" * 200) != slug("x" * 200)  # same slug text, different originals
    assert slug("X" * 200) == slug("X" * 200)


def test_slug_does_not_end_in_a_dash_before_the_hash() -> None:
    value = "a" * 53 + "/" + "b" * 20
    assert slug(value) == "a" * 53 + "-" + sha8(value)


@pytest.mark.parametrize(
    ("value", "what", "message"),
    [
        ("---", "name", "name '---' has no letters or digits to make a name from"),
        ("🚀🔥", "branch", "branch '🚀🔥' has no letters or digits to make a name from"),
        ("", "project", "project '' has no letters or digits to make a name from"),
        ("ß", "name", "name 'ß' has no letters or digits to make a name from"),
    ],
)
def test_slug_refuses_names_without_letters_or_digits(value: str, what: str, message: str) -> None:
    with pytest.raises(NameRefused) as err:
        slug(value, what=what)
    assert str(err.value) == message


RULE = "use 1-40 lowercase letters, digits and dashes, starting and ending with a letter or digit"


@pytest.mark.parametrize("value", ["production", "staging", "pr-123", "a", "9", "a" * 40, "qa-2"])
def test_environment_name_accepts(value: str) -> None:
    assert environment_name(value) == value
    assert project_name(value) == value


@pytest.mark.parametrize(
    "value", ["", "Prod", "-staging", "staging-", "a" * 41, "my_env", "pr 1", "prod\n", "../x", "é"]
)
def test_environment_name_refuses(value: str) -> None:
    with pytest.raises(NameRefused) as err:
        environment_name(value)
    assert str(err.value) == f"environment name {value!r} is not allowed: {RULE}"


def test_project_name_message() -> None:
    with pytest.raises(NameRefused) as err:
        project_name("Yoto App")
    assert str(err.value) == f"project name 'Yoto App' is not allowed: {RULE}"


@pytest.mark.parametrize(("number", "expected"), [(1, "pr-1"), (123, "pr-123"), ("45", "pr-45"), ("007", "pr-7")])
def test_pr_environment(number: int | str, expected: str) -> None:
    assert pr_environment(number) == expected


@pytest.mark.parametrize("number", [0, -1, "0", "-3", "1.5", 1.5, "abc", "", True, None, "١٢", 10**40])
def test_pr_environment_refuses(number: object) -> None:
    with pytest.raises(NameRefused) as err:
        pr_environment(number)  # type: ignore[arg-type]
    assert str(err.value) == f"pull request number {number!r} is not a positive integer"


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        ("feature/add-mqtt", "feature-add-mqtt"),
        ("feature/Add_MQTT", "feature-add-mqtt"),
        ("fix/auth-bug", "fix-auth-bug"),
        ("a" * 40, "a" * 40),
        (LONG_BRANCH, "feature-" + "a" * 23 + "-" + sha8(LONG_BRANCH)),
        ("x" * 200, "x" * 31 + "-94218caa"),
    ],
)
def test_branch_environment(branch: str, expected: str) -> None:
    assert branch_environment(branch) == expected
    assert environment_name(expected) == expected  # always a valid environment name


def test_branch_environment_refuses_emoji_only() -> None:
    with pytest.raises(NameRefused) as err:
        branch_environment("🚀")
    assert str(err.value) == "branch '🚀' has no letters or digits to make a name from"


@pytest.mark.parametrize(
    ("project", "environment", "domain", "production", "expected"),
    [
        ("yoto", "production", "localhost", True, "yoto.localhost"),
        ("yoto", "staging", "localhost", False, "yoto-staging.localhost"),
        ("yoto", "pr-123", "up.example.com", False, "yoto-pr-123.up.example.com"),
        ("yoto", "staging", "Example.COM.", False, "yoto-staging.example.com"),
        (
            "a" * 40,
            "b" * 40,
            "localhost",
            False,
            "a" * 40 + "-" + "b" * 13 + "-" + sha8("a" * 40 + "-" + "b" * 40) + ".localhost",
        ),
    ],
)
def test_hostname(project: str, environment: str, domain: str, production: bool, expected: str) -> None:
    result = hostname(project, environment, domain, production=production)
    assert result == expected
    assert len(result.split(".")[0]) <= 63


@pytest.mark.parametrize("domain", ["", "exa mple.com", "-bad.com", "a..b", "under_score.com"])
def test_domain_name_refuses(domain: str) -> None:
    with pytest.raises(NameRefused) as err:
        domain_name(domain)
    assert str(err.value) == f"domain {domain!r} is not a valid domain name"


@pytest.mark.parametrize(
    ("ref", "safe"),
    [
        ("main", True),
        ("feature/add-mqtt", True),
        ("fix/auth-bug", True),
        ("release/v1.2.0", True),
        ("feature/émoji", True),
        ("", False),
        ("a..b", False),
        ("../../etc", False),
        ("-delete", False),
        ("/main", False),
        ("main/", False),
        ("main.", False),
        ("a//b", False),
        ("feature/.hidden", False),
        ("x.lock", False),
        ("feature/x.lock/y", False),
        ("@", False),
        ("a@{1}", False),
        ("a b", False),
        ("a~1", False),
        ("a^", False),
        ("a:b", False),
        ("a?", False),
        ("a*", False),
        ("a[1]", False),
        ("a\\b", False),
        ("a\tb", False),
        ("a\nb", False),
        ("a\x7fb", False),
        ("a\x00b", False),
        ("a" * 256, False),
    ],
)
def test_is_safe_git_ref(ref: str, safe: bool) -> None:
    assert is_safe_git_ref(ref) is safe


@pytest.mark.parametrize(
    ("ref", "branch"),
    [("refs/heads/main", "main"), ("refs/heads/feature/add-mqtt", "feature/add-mqtt"), ("develop", "develop")],
)
def test_branch_from_ref(ref: str, branch: str) -> None:
    assert branch_from_ref(ref) == branch


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("refs/tags/v1", "git ref 'refs/tags/v1' is not a branch (expected refs/heads/<branch>)"),
        ("refs/heads/a..b", "git ref 'refs/heads/a..b' is not a safe branch name"),
        ("refs/heads/", "git ref 'refs/heads/' is not a safe branch name"),
        ("--upload-pack=x", "git ref '--upload-pack=x' is not a safe branch name"),
    ],
)
def test_branch_from_ref_refuses(ref: str, message: str) -> None:
    with pytest.raises(NameRefused) as err:
        branch_from_ref(ref)
    assert str(err.value) == message


def test_safe_join_inside(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "releases", "yoto", "pr-1") == tmp_path.resolve() / "releases" / "yoto" / "pr-1"
    assert safe_join(tmp_path, "a/./b") == tmp_path.resolve() / "a" / "b"
    assert safe_join(tmp_path) == tmp_path.resolve()


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("../../etc", "path '../../etc' climbs out with '..'"),
        ("a/../../b", "path 'a/../../b' climbs out with '..'"),
        ("a/..", "path 'a/..' climbs out with '..'"),
        ("/etc/passwd", "path '/etc/passwd' is absolute"),
        ("a\x00b", "path 'a\\x00b' contains a NUL byte"),
    ],
)
def test_safe_join_refuses(tmp_path: Path, part: str, message: str) -> None:
    with pytest.raises(NameRefused) as err:
        safe_join(tmp_path, "ok", part)
    assert str(err.value) == message


def test_safe_join_refuses_a_symlink_that_leads_outside(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(tmp_path, base / "up")
    with pytest.raises(NameRefused) as err:
        safe_join(base, "up", "secret")
    assert str(err.value) == f"path 'up/secret' resolves outside {base.resolve()}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:token@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("fatal: unable to access 'https://x-access-token:ghs_abc@host/r.git/': 403", "fatal: unable to access "
         "'https://***@host/r.git/': 403"),
        ("http://u:p@ss@127.0.0.1:1/x", "http://***@127.0.0.1:1/x"),  # a raw "@" in the password
        ("https://ghp_only@github.com/o/r", "https://***@github.com/o/r"),
        ("https://u:p@host", "https://***@host"),
        ("git+ssh://a:b@h/x and https://c:d@e/f", "git+ssh://***@h/x and https://***@e/f"),
        ("error: File x (http://user:s3cret@127.0.0.1:80/r.git/objects/01/23) corrupt",
         "error: File x (http://***@127.0.0.1:80/r.git/objects/01/23) corrupt"),
        ("https://host/path/a@b", "https://host/path/a@b"),  # an "@" after the host is not userinfo
        ("https://host:443 mail me@example.com", "https://host:443 mail me@example.com"),
        ("/srv/git/app.git", "/srv/git/app.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),  # scp-like: a user name, no password
        ("", ""),
    ],
)
def test_scrub_credentials(text, expected) -> None:
    assert scrub_credentials(text) == expected
