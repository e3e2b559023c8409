"""SecretBox key file handling and round trips; mask; Redactor with exact expected output."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet

from branchyard.errors import BackendError, BadInput
from branchyard.secrets import MASK, Redactor, SecretBox, mask


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------ SecretBox


def test_key_file_created_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "secrets.key"
    box = SecretBox(key_file)
    assert not key_file.exists()  # nothing happens before first use
    token = box.encrypt("s3cret value ✓")
    assert mode(key_file) == 0o600
    assert mode(key_file.parent) == 0o700
    Fernet(key_file.read_bytes().strip())  # a valid Fernet key
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["secrets.key"]  # no temporary left
    assert token != "s3cret value ✓" and token.isascii()
    assert box.decrypt(token) == "s3cret value ✓"


def test_key_file_mode_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SecretBox(tmp_path / "k").encrypt("x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "k") == 0o600


def test_a_second_box_on_the_same_file_decrypts(tmp_path: Path) -> None:
    token = SecretBox(tmp_path / "k").encrypt("hello")
    assert SecretBox(tmp_path / "k").decrypt(token) == "hello"
    assert SecretBox(tmp_path / "k").encrypt("hello") != token  # random IV: equal values do not show as equal
    assert SecretBox(tmp_path / "k").decrypt(SecretBox(tmp_path / "k").encrypt("")) == ""


def test_wrong_key_file_is_bad_input(tmp_path: Path) -> None:
    token = SecretBox(tmp_path / "a").encrypt("hello")
    with pytest.raises(BadInput) as caught:
        SecretBox(tmp_path / "b").decrypt(token)
    assert str(caught.value) == "secret cannot be decrypted: wrong key file?"


@pytest.mark.parametrize("token", ["", "not a token", "gAAAAA", "ünïcode"])
def test_garbage_token_is_bad_input(tmp_path: Path, token: str) -> None:
    with pytest.raises(BadInput, match=r"^secret cannot be decrypted: wrong key file\?$"):
        SecretBox(tmp_path / "k").decrypt(token)


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_key_file_accessible_by_group_or_other_is_refused(tmp_path: Path, bad_mode: int) -> None:
    key_file = tmp_path / "k"
    token = SecretBox(key_file).encrypt("hello")
    key_file.chmod(bad_mode)
    with pytest.raises(BadInput) as caught:
        SecretBox(key_file).decrypt(token)
    assert str(caught.value) == (
        f"key file {key_file} has mode {bad_mode:04o}: it must not be readable by group or other (chmod 600 {key_file})"
    )
    with pytest.raises(BadInput):
        SecretBox(key_file).encrypt("x")


@pytest.mark.parametrize("good_mode", [0o600, 0o400])
def test_private_key_file_modes_are_accepted(tmp_path: Path, good_mode: int) -> None:
    key_file = tmp_path / "k"
    token = SecretBox(key_file).encrypt("hello")
    key_file.chmod(good_mode)
    assert SecretBox(key_file).decrypt(token) == "hello"


def test_key_file_without_a_fernet_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not a key\n")
    os.close(fd)
    with pytest.raises(BadInput, match=f"^key file {key_file} does not hold a Fernet key$"):
        SecretBox(key_file).encrypt("x")


def test_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir(mode=0o700)
    with pytest.raises(BadInput, match="is not a regular file"):
        SecretBox(tmp_path / "k").encrypt("x")


def test_uncreatable_key_file_is_a_backend_error(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("")
    key_file = tmp_path / "plain-file" / "k"  # its "directory" is a file
    with pytest.raises(BackendError) as caught:
        SecretBox(key_file).encrypt("x")
    assert str(caught.value) == f"cannot open key file {key_file}: Not a directory"


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / "k"
    boxes = [SecretBox(key_file) for _ in range(8)]
    tokens: list[str] = []
    barrier = threading.Barrier(len(boxes))

    def work(box: SecretBox) -> None:
        barrier.wait()
        tokens.append(box.encrypt("same"))

    threads = [threading.Thread(target=work, args=(b,)) for b in boxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tokens) == 8
    fresh = SecretBox(key_file)
    assert [fresh.decrypt(t) for t in tokens] == ["same"] * 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


# --------------------------------------------------------------------------------------------- mask


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ""), ("x", MASK), ("hunter2", MASK), ("a much longer secret value than the mask", MASK)],
)
def test_mask_never_reveals_length(value: str, expected: str) -> None:
    assert mask(value) == expected


def test_mask_constant() -> None:
    assert MASK == "••••••"


# ----------------------------------------------------------------------------------------- Redactor

M = MASK


@pytest.mark.parametrize(
    ("secrets", "text", "expected"),
    [
        # plain occurrences, every one of them
        (["hunter22"], "password=hunter22 again hunter22", f"password={M} again {M}"),
        # empty input, no secrets, nothing matching
        (["hunter22"], "", ""),
        ([], "nothing to hide", "nothing to hide"),
        (["hunter22"], "nothing to hide", "nothing to hide"),
        # shorter than 4 characters: not redacted; exactly 4: redacted; empty values ignored
        (["abc", ""], "abc abcd", "abc abcd"),
        (["abcd"], "abc abcd", f"abc {M}"),
        # one value inside another: the longest wins, nothing of either is left
        (["secret", "secretpassword"], "x=secretpassword y=secret", f"x={M} y={M}"),
        (["secretpassword", "secret"], "x=secretpassword y=secret", f"x={M} y={M}"),
        # overlapping values: one MASK over their union, no tail of either survives
        (["abcdef", "defghi"], "[abcdefghi]", f"[{M}]"),
        (["defghi", "abcdef"], "[abcdefghi]", f"[{M}]"),
        # adjacent values merge too (no hint that two secrets sit there)
        (["abcd", "efgh"], "abcdefgh!", f"{M}!"),
        # a value's own repetitions overlapping
        (["aaaa"], "aaaaaa", M),
        # regex metacharacters are literal
        (["a.b*c+d"], "a.b*c+d axbbcd", f"{M} axbbcd"),
        # multi-line text and unicode values
        (["pässwörd"], "line1 pässwörd\nline2 pässwörd", f"line1 {M}\nline2 {M}"),
    ],
)
def test_redactor_exact(secrets: list[str], text: str, expected: str) -> None:
    assert Redactor(secrets)(text) == expected


def test_redactor_url_encoded_forms_inside_a_postgres_url() -> None:
    password = "p@ss:w/rd#1 ä"
    url = f"postgresql://app:{quote(password, safe='')}@127.0.0.1:5432/app_pr_123"
    assert url == "postgresql://app:p%40ss%3Aw%2Frd%231%20%C3%A4@127.0.0.1:5432/app_pr_123"
    redact = Redactor([password])
    assert redact(url) == f"postgresql://app:{M}@127.0.0.1:5432/app_pr_123"
    assert redact(f"raw {password} and {url}") == f"raw {M} and postgresql://app:{M}@127.0.0.1:5432/app_pr_123"


def test_redactor_plain_value_inside_a_url_and_an_encoded_one_next_to_it() -> None:
    redact = Redactor(["s3cr3t-token", "user/name"])
    text = "postgres://user%2Fname:s3cr3t-token@db/x user/name"
    assert redact(text) == f"postgres://{M}:{M}@db/x {M}"


def test_redactor_accepts_any_iterable_once() -> None:
    redact = Redactor(v for v in ["first-secret", "second-secret"])
    assert redact("first-secret second-secret") == f"{M} {M}"
    assert redact("first-secret") == M  # reusable
