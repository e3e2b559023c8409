"""split_build_command: which leading steps install dependencies (cacheable) and which run every build."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard.build.steps import split_build_command, split_top_level

REQ = "pip install -r requirements.txt"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "requirements.txt").write_text("fastapi==0.110\nuvicorn>=0.29  # server\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\npytest\n")
    (tmp_path / "requirements-local.txt").write_text("fastapi\n-e .\n")
    (tmp_path / "requirements-nested.txt").write_text("-r requirements-local.txt\n")
    (tmp_path / "requirements-path.txt").write_text("./libs/foo\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cmd", "install", "other"),
    [
        # the implicit Nixpacks install
        (None, [REQ], []),
        ("", [], []),
        ("   ", [], []),
        # plain dependency installs
        (REQ, [REQ], []),
        ("pip3 install -r requirements.txt", ["pip3 install -r requirements.txt"], []),
        ("pip3.11 install -r requirements.txt", ["pip3.11 install -r requirements.txt"], []),
        ("python -m pip install -r requirements.txt", ["python -m pip install -r requirements.txt"], []),
        ("python3 -m pip install --upgrade pip", ["python3 -m pip install --upgrade pip"], []),
        ("pip install django==4.2 'gunicorn>=21'", ["pip install django==4.2 'gunicorn>=21'"], []),
        ("pip install --requirement=requirements.txt", ["pip install --requirement=requirements.txt"], []),
        ("pip install -rrequirements.txt", ["pip install -rrequirements.txt"], []),
        (
            "pip install --no-cache-dir -i https://pypi.example/simple -r requirements.txt -c constraints.txt",
            ["pip install --no-cache-dir -i https://pypi.example/simple -r requirements.txt -c constraints.txt"],
            [],
        ),
        ("pip install -r requirements-dev.txt", ["pip install -r requirements-dev.txt"], []),
        # leading installs, then the rest — in order, everything after the first other step is other
        (
            "pip install -r requirements.txt && python manage.py collectstatic --noinput",
            [REQ],
            ["python manage.py collectstatic --noinput"],
        ),
        (
            "pip install -U pip&&pip install -r requirements.txt&&npm ci&&pip install gunicorn",
            ["pip install -U pip", REQ],
            ["npm ci", "pip install gunicorn"],
        ),
        ("python manage.py migrate && pip install -r requirements.txt", [], ["python manage.py migrate", REQ]),
        # installing the app itself is not a dependency install
        ("pip install .", [], ["pip install ."]),
        ("pip install -e .", [], ["pip install -e ."]),
        ("pip install --editable=.", [], ["pip install --editable=."]),
        ("pip install -r requirements.txt && pip install -e .", [REQ], ["pip install -e ."]),
        ("pip install ./libs/foo", [], ["pip install ./libs/foo"]),
        ("pip install dist/app-1.0-py3-none-any.whl", [], ["pip install dist/app-1.0-py3-none-any.whl"]),
        ("pip install -r requirements-local.txt", [], ["pip install -r requirements-local.txt"]),
        ("pip install -r requirements-nested.txt", [], ["pip install -r requirements-nested.txt"]),
        ("pip install -r requirements-path.txt", [], ["pip install -r requirements-path.txt"]),
        ("pip install -r ../outside.txt", [], ["pip install -r ../outside.txt"]),
        # installing somewhere else than the venv
        ("pip install --user requests", [], ["pip install --user requests"]),
        ("pip install --target vendor requests", [], ["pip install --target vendor requests"]),
        # not pip install, or more shell than we split
        ("pip download -r requirements.txt", [], ["pip download -r requirements.txt"]),
        ("pip install", [], ["pip install"]),
        ("pip install -r", [], ["pip install -r"]),
        ("pipenv install", [], ["pipenv install"]),
        ("pip install -r requirements.txt; make", [], ["pip install -r requirements.txt; make"]),
        ("pip install -r requirements.txt || true", [], ["pip install -r requirements.txt || true"]),
        ("pip install -r requirements.txt > /dev/null", [], ["pip install -r requirements.txt > /dev/null"]),
        ("pip install -r $REQS", [], ["pip install -r $REQS"]),
        ("pip install 'unterminated", [], ["pip install 'unterminated"]),
        ("python3.12 -m pip install requests", ["python3.12 -m pip install requests"], []),
        ("python -m pipx install requests", [], ["python -m pipx install requests"]),
        # quoted && does not split
        ("echo 'a && b' && pip install -r requirements.txt", [], ["echo 'a && b'", REQ]),
    ],
)
def test_split_build_command(src: Path, cmd: str | None, install: list[str], other: list[str]) -> None:
    assert split_build_command(cmd, src) == (install, other)


def test_no_command_and_no_requirements_means_no_steps(tmp_path: Path) -> None:
    assert split_build_command(None, tmp_path) == ([], [])


def test_implicit_install_of_a_requirements_file_that_installs_the_app(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask\n-e .\n")
    assert split_build_command(None, tmp_path) == ([], [REQ])


@pytest.mark.parametrize(
    ("cmd", "parts"),
    [
        ("a && b", ["a", "b"]),
        ("a&&b&&c", ["a", "b", "c"]),
        ('echo "x && y" && z', ['echo "x && y"', "z"]),
        (r"echo a \&& b", [r"echo a \&& b"]),
        ("a && && b", ["a", "b"]),
        ("a & b", ["a & b"]),
        ("a || b", ["a || b"]),
    ],
)
def test_split_top_level(cmd: str, parts: list[str]) -> None:
    assert split_top_level(cmd) == parts


@pytest.mark.parametrize(
    ("cmd", "install"),
    [
        ("pip install 'django>=4,<5'", True),
        ('pip install "django>=4,<5"', True),
        ('pip install "django>=$V"', False),
        ("pip install django>=4", False),  # unquoted: a redirection to a file named =4
    ],
)
def test_quoted_specifiers(src: Path, cmd: str, install: bool) -> None:
    assert split_build_command(cmd, src) == (([cmd], []) if install else ([], [cmd]))
