"""What the build reads from an app's files: Python version, installer, start command (build/detect.py, pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchyard.build import detect, installers
from branchyard.build.detect import PythonRequest, python_request, version_matches
from branchyard.errors import BadInput, BuildFailed


def app(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


PYPROJECT_312 = '[project]\nname = "a"\nversion = "1"\nrequires-python = ">=3.12"\n'


@pytest.mark.parametrize(
    ("files", "variables", "expected"),
    [
        ({}, {}, None),
        ({".python-version": "3.12\n"}, {}, PythonRequest("3.12", ".python-version")),
        ({".python-version": "3.12.1\n3.11\n"}, {}, PythonRequest("3.12.1", ".python-version")),
        ({".python-version": "# pinned\ncpython-3.13.0\n"}, {}, PythonRequest("3.13.0", ".python-version")),
        ({".python-version": "system\n"}, {}, None),
        ({"runtime.txt": "python-3.10.13\n"}, {}, PythonRequest("3.10.13", "runtime.txt")),
        ({"runtime.txt": "python-3.12"}, {}, PythonRequest("3.12", "runtime.txt")),
        ({"Pipfile": '[requires]\npython_version = "3.11"\n'}, {}, PythonRequest("3.11", "Pipfile [requires] python_version")),
        ({"pyproject.toml": PYPROJECT_312}, {}, PythonRequest(">=3.12", "pyproject.toml requires-python")),
        # the order: variables, .python-version, runtime.txt, Pipfile, pyproject.toml
        ({".python-version": "3.12", "runtime.txt": "python-3.10", "pyproject.toml": PYPROJECT_312}, {},
         PythonRequest("3.12", ".python-version")),
        ({"runtime.txt": "python-3.10", "pyproject.toml": PYPROJECT_312}, {}, PythonRequest("3.10", "runtime.txt")),
        ({".python-version": "3.12"}, {"NIXPACKS_PYTHON_VERSION": "3.11"},
         PythonRequest("3.11", "variable NIXPACKS_PYTHON_VERSION")),
        ({".python-version": "3.12"}, {"NIXPACKS_PYTHON_VERSION": "3.11", "RAILPACK_PYTHON_VERSION": "3.13"},
         PythonRequest("3.13", "variable RAILPACK_PYTHON_VERSION")),
        ({}, {"RAILPACK_PYTHON_VERSION": ""}, None),
    ],
)
def test_python_request(tmp_path, files, variables, expected):
    assert python_request(app(tmp_path, files), variables) == expected


@pytest.mark.parametrize(
    ("files", "variables", "message"),
    [
        ({"runtime.txt": "3.12\n"}, {}, "runtime.txt: expected python-3.X or python-3.X.Y, got '3.12'"),
        ({".python-version": "latest\n"}, {}, ".python-version: not a Python version: 'latest' (expected e.g. 3.12)"),
        ({}, {"RAILPACK_PYTHON_VERSION": "three"},
         "variable RAILPACK_PYTHON_VERSION: not a Python version: 'three' (expected e.g. 3.12 or 3.12.1)"),
        ({"pyproject.toml": "[project\n"}, {}, "pyproject.toml: invalid TOML"),
    ],
)
def test_python_request_refuses_unreadable_values_naming_the_file(tmp_path, files, variables, message):
    with pytest.raises(BadInput) as err:
        python_request(app(tmp_path, files), variables)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("spec", "version", "matches"),
    [
        ("3.12", (3, 12, 1), True),
        ("3.12", (3, 11, 7), False),
        ("3.12", (3, 1, 2), False),
        ("3.12.1", (3, 12, 1), True),
        ("3.12.1", (3, 12, 2), False),
        ("3", (3, 13, 0), True),
        (">=3.12", (3, 13, 0), True),
        (">=3.12", (3, 11, 7), False),
        (">=3.10,<3.12", (3, 11, 7), True),
        (">=3.10,<3.12", (3, 12, 0), False),
        ("~=3.11", (3, 13, 0), True),
        ("==3.11.*", (3, 11, 7), True),
        ("==3.11.*", (3, 12, 0), False),
        ("nonsense", (3, 12, 0), False),
    ],
)
def test_version_matches(spec, version, matches):
    assert version_matches(spec, version) is matches


@pytest.mark.parametrize(
    ("spec", "first", "contains", "lacks"),
    [("3.12", "3.12", "3.12", "3.11"), (">=3.11,<3.13", "3.12", "3.11", "3.13"), ("3.5", "3.5", "3.5", "3.6")],
)
def test_minor_candidates(spec, first, contains, lacks):
    found = detect.minor_candidates(spec)
    assert found[0] == first and contains in found and lacks not in found


UV_PROJECT = '[project]\nname = "a"\nversion = "1"\ndependencies = ["fastapi"]\n'
PACKAGE = UV_PROJECT + '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'


@pytest.mark.parametrize(
    ("files", "kind", "package"),
    [
        ({}, detect.NONE, False),
        ({"main.py": ""}, detect.NONE, False),
        ({"requirements.txt": "x\n", "pyproject.toml": UV_PROJECT, "uv.lock": ""}, detect.PIP, False),  # Railpack's order
        ({"pyproject.toml": UV_PROJECT, "uv.lock": ""}, detect.UV, False),
        ({"pyproject.toml": PACKAGE, "uv.lock": ""}, detect.UV, True),
        ({"pyproject.toml": PACKAGE + "[tool.uv]\npackage = false\n", "uv.lock": ""}, detect.UV, False),
        ({"pyproject.toml": UV_PROJECT, "poetry.lock": ""}, detect.POETRY, False),
        ({"Pipfile": "[packages]\n", "Pipfile.lock": "{}"}, detect.PIPENV, False),
        ({"pyproject.toml": UV_PROJECT}, detect.PROJECT, True),
    ],
)
def test_detect_installer(tmp_path, files, kind, package):
    found = detect.detect_installer(app(tmp_path, files))
    assert (found.kind, found.package) == (kind, package)


def test_pyproject_without_a_project_table_is_refused(tmp_path):
    with pytest.raises(BadInput, match=r"^pyproject.toml: no \[project\] table"):
        detect.detect_installer(app(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}))


def _plan(tmp_path, files, command=None):
    src = app(tmp_path, files)
    return installers.plan(src, command, detect.detect_installer(src), tool="/opt/uv", python="/usr/bin/python3.12")


def test_plans(tmp_path):
    p = _plan(tmp_path / "req", {"requirements.txt": "fastapi\n"})
    assert [s.label for s in p.dependencies] == ["pip install -r requirements.txt"] and not p.app
    # requirements.txt that installs the app too: its dependency lines cached, its local lines in the release's layer
    p = _plan(tmp_path / "local", {"requirements.txt": "-r base.txt\nfastapi  # web\n-e .\n", "base.txt": "click\n"})
    assert [(s.label, s.command, s.writes) for s in p.dependencies] == [(
        "pip install -r requirements.txt (its dependency lines)", "pip install -r .branchyard-dependencies.txt",
        ((".branchyard-dependencies.txt", "-r base.txt\nfastapi\n"),))]
    assert [(s.label, s.command, s.writes) for s in p.app] == [(
        "uv pip install --no-deps -r requirements.txt (its local lines: -e .)", "uv pip install --no-deps -r .branchyard-local.txt",
        ((".branchyard-local.txt", "-e .\n"),))]
    p = _plan(tmp_path / "nested", {"requirements.txt": "-r base.txt\n", "base.txt": "fastapi\n-e .\n"})
    assert not p.dependencies and [s.label for s in p.app] == ["pip install -r requirements.txt"] and p.notes
    p = _plan(tmp_path / "uv", {"pyproject.toml": PACKAGE, "uv.lock": ""})
    assert [s.label for s in p.dependencies] == ["uv sync --frozen --no-dev --no-install-project"]
    assert p.dependencies[0].command.startswith("/opt/uv sync --frozen") and "--python /usr/bin/python3.12" in p.dependencies[0].command
    assert [s.label for s in p.app] == ["uv pip install --no-deps -e ."]
    p = _plan(tmp_path / "proj", {"pyproject.toml": UV_PROJECT.replace('["fastapi"]', '["fastapi>=0.110", "uvicorn[standard]"]')})
    assert [s.label for s in p.dependencies] == ["pip install 'fastapi>=0.110' 'uvicorn[standard]'"]
    assert [s.label for s in p.app] == ["uv pip install --no-deps -e ."]
    p = _plan(tmp_path / "none", {"main.py": ""})
    assert p.installer == detect.NONE and p.notes == (detect.NO_INSTALLER,)


def test_the_build_commands_own_install_replaces_the_detected_one(tmp_path):
    p = _plan(tmp_path / "a", {"requirements.txt": "x\n"}, "pip install -r requirements.txt && python manage.py collectstatic")
    assert p.installer == "buildCommand" and [s.label for s in p.other] == ["python manage.py collectstatic"]
    p = _plan(tmp_path / "b", {"requirements.txt": "x\n"}, "python manage.py collectstatic")  # no install in it
    assert p.installer == detect.PIP and [s.label for s in p.other] == ["python manage.py collectstatic"]


def test_poetry_and_pipenv_plans(tmp_path):
    p = _plan(tmp_path / "poetry", {"pyproject.toml": PACKAGE, "poetry.lock": ""})
    assert [s.label for s in p.dependencies] == ["poetry install --no-root --only main"]
    assert p.dependencies[0].command.startswith("POETRY_VIRTUALENVS_CREATE=false /opt/uv install --no-root")
    assert [s.label for s in p.app] == ["uv pip install --no-deps -e ."]
    p = _plan(tmp_path / "script", {"pyproject.toml": PACKAGE + "[tool.poetry]\npackage-mode = false\n", "poetry.lock": ""})
    assert p.app == ()
    p = _plan(tmp_path / "pipenv", {"Pipfile": "[packages]\n", "Pipfile.lock": "{}"})
    assert [s.label for s in p.dependencies] == ["pipenv install --system --deploy"] and p.app == ()
    with pytest.raises(BuildFailed, match=r"^Pipfile: no Pipfile.lock next to it: run `pipenv lock` and commit Pipfile.lock$"):
        _plan(tmp_path / "nolock", {"Pipfile": "[packages]\n"})


FASTAPI = "from fastapi import FastAPI\n\napp = FastAPI()\n"


@pytest.mark.parametrize(
    ("files", "command", "reason"),
    [
        ({"main.py": FASTAPI}, "uvicorn main:app --host 0.0.0.0 --port $PORT", "FastAPI app in main.py"),
        ({"app.py": "import flask\napi: Starlette = Starlette(routes=[])\n"}, "uvicorn app:api --host 0.0.0.0 --port $PORT",
         "Starlette app in app.py"),
        ({"app.py": "from flask import Flask\napp = Flask(__name__)\n", "requirements.txt": "flask\ngunicorn==22\n"},
         "gunicorn app:app --bind 0.0.0.0:$PORT", "Flask app in app.py"),
        ({"app.py": "from flask import Flask\napp = Flask(__name__)\n"},
         "flask --app app:app run --host 0.0.0.0 --port $PORT", "Flask app in app.py"),
        ({"manage.py": "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n", "site1/wsgi.py": "",
          "requirements.txt": "django\ngunicorn\n", "main.py": FASTAPI},
         "gunicorn site1.wsgi --bind 0.0.0.0:$PORT", "Django project site1 (manage.py, site1/wsgi.py, gunicorn a dependency)"),
        ({"manage.py": "", "proj/wsgi.py": "", "proj/asgi.py": "", "pyproject.toml": UV_PROJECT.replace('"fastapi"', '"uvicorn"')},
         "uvicorn proj.asgi:application --host 0.0.0.0 --port $PORT",
         "Django project proj (manage.py, proj/asgi.py, uvicorn a dependency)"),
        ({"manage.py": "", "proj/wsgi.py": ""}, "python manage.py runserver 0.0.0.0:$PORT", None),
    ],
)
def test_infer_start_command(tmp_path, files, command, reason):
    found = detect.infer_start_command(app(tmp_path, files))
    assert found is not None and found.command == command
    if reason:
        assert found.reason == reason


@pytest.mark.parametrize("files", [{}, {"main.py": "print('hi')\n"}, {"manage.py": ""}])
def test_nothing_to_infer(tmp_path, files):
    assert detect.infer_start_command(app(tmp_path, files)) is None
