"""A corpus of small apps, written here, deployed for real through `git push` and checked through the router: the
build reads each one's Python version, installer and start command as Railpack would (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import new_home, start_plane, stop_plane

from branchyard.build import interpreters
from branchyard.build.detect import PythonRequest
from branchyard.errors import BadInput

pytestmark = pytest.mark.integration

OPERATOR_INDEX = "https://pypi.org/simple"

# An ASGI app with no framework: it answers with its interpreter's version and what the build left behind.
ASGI = textwrap.dedent("""
    import json, pathlib, sys

    VERSION = "v1"

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        built = pathlib.Path("built.txt")
        body = json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "version": VERSION,
                           "built": built.read_text().strip() if built.exists() else None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
    """)
FASTAPI = textwrap.dedent("""
    import sys
    from fastapi import FastAPI

    app = FastAPI()
    VERSION = "v1"

    @app.get("/")
    def root():
        return {"python": "%d.%d.%d" % sys.version_info[:3], "version": VERSION}
    """)
START = '[deploy]\nstartCommand = "uvicorn main:app --host 0.0.0.0 --port $PORT"\n'


def python_for(spec: str) -> str:
    """A path to an interpreter of `spec` on this machine, or skip the test."""
    try:
        return interpreters.choose(PythonRequest(spec, "test"), default="/nonexistent/python3").path
    except BadInput:
        pytest.skip(f"no Python {spec} on this machine")


@pytest.fixture(scope="module")
def corpus_plane(venv_cache):
    """One control plane for the corpus; the operator sets a package index (BRANCHYARD_PIP_INDEX_URL)."""
    p = start_plane(new_home(), venv_cache, extra_env={"BRANCHYARD_PIP_INDEX_URL": OPERATOR_INDEX})
    try:
        yield p
    finally:
        stop_plane(p)


def make_app(plane, tmp_path: Path, name: str, files: dict[str, str], *, variables: tuple[str, ...] = (),
             secrets: tuple[str, ...] = ()) -> Path:
    repo = tmp_path / name
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    plane.git(repo, "init", "--quiet", "--initial-branch=main")
    plane.commit(repo, "initial")
    plane.run("init", cwd=repo)
    if variables:
        plane.run("variables", "set", "--skip-deploys", "-e", "production", *variables, cwd=repo)
    if secrets:
        plane.run("variables", "set", "--secret", "--skip-deploys", "-e", "production", *secrets, cwd=repo)
    return repo


def push(plane, repo: Path) -> str:
    """Push main; the build and deploy log the pusher saw."""
    done = plane.git(repo, "push", "branchyard", "main")
    return done.stderr


def test_fastapi_with_uv_lock_and_python_version_312(corpus_plane, tmp_path):
    plane = corpus_plane
    py312 = python_for("3.12")
    pyproject = textwrap.dedent("""
        [project]
        name = "corpus-uv"
        version = "0.1.0"
        requires-python = ">=3.10"
        dependencies = ["fastapi", "uvicorn"]

        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [tool.setuptools]
        py-modules = ["main"]
        """)
    repo = make_app(plane, tmp_path, "corpus-uv", {"pyproject.toml": pyproject, ".python-version": "3.12\n", "main.py": FASTAPI})
    lock = subprocess.run([interpreters.uv_binary(), "lock", "--python", py312], cwd=repo, capture_output=True, text=True,
                          env=os.environ | {"UV_PYTHON_DOWNLOADS": "never"}, timeout=300)
    assert lock.returncode == 0, lock.stderr
    plane.commit(repo, "uv.lock")
    log = push(plane, repo)
    assert "python: Python 3.12." in log and "asked by .python-version: 3.12" in log
    assert "installer: uv (pyproject.toml + uv.lock)" in log
    assert "$ uv sync --frozen --no-dev --no-install-project" in log
    assert "start command: uvicorn main:app --host 0.0.0.0 --port $PORT (inferred: FastAPI app in main.py)" in log
    answer = plane.get("corpus-uv.localhost", "/").json()
    assert answer["python"].startswith("3.12.") and answer["version"] == "v1"
    [dep] = plane.json("deployments", "-e", "production", cwd=repo)
    meta = json.loads((plane.home / "releases" / "corpus-uv" / dep["id"] / ".branchyard-release.json").read_text())
    assert meta["python_version"].startswith("3.12.") and meta["python_source"] == ".python-version"
    assert os.path.realpath(meta["python"]) == os.path.realpath(py312)
    assert meta["installer"] == "uv" and meta["venv"] != meta["dependencies"]

    # A code-only push: no dependency is installed again, and the app's own layer is the first release's, relocated.
    (repo / "main.py").write_text(FASTAPI.replace('VERSION = "v1"', 'VERSION = "v2"'))
    plane.commit(repo, "v2")
    log = push(plane, repo)
    assert "using cached virtualenv" in log and "(dependencies cached)" in log
    assert "$ uv sync" not in log and "$ uv pip install" not in log
    assert f"reusing the app's layer of {dep['id'][:12]} (packaging files and file list unchanged;" in log
    assert plane.get("corpus-uv.localhost", "/").json()["version"] == "v2"
    # A push adding a file: the layer is made again (the build backend runs).
    (repo / "extra.py").write_text("")
    plane.commit(repo, "v3")
    log = push(plane, repo)
    assert "$ uv pip install --no-deps -e ." in log and "reusing the app's layer" not in log
    assert "fastapi" not in log.split("$ uv pip install --no-deps -e .", 1)[1].split("-----> build done", 1)[0].lower()
    meta = plane.json("deployments", "-e", "production", cwd=repo)
    assert meta[0]["status"] == "SUCCESS"


def test_runtime_txt_and_build_time_variables_with_secrets_masked(corpus_plane, tmp_path):
    plane = corpus_plane
    python_for("3.10")
    railway = START.replace("[deploy]", '[build]\nbuildCommand = "echo build sees $GREETING and $API_TOKEN && '
                                         'echo $GREETING > built.txt"\n\n[deploy]')
    repo = make_app(plane, tmp_path, "corpus-runtime",
                    {"runtime.txt": "python-3.10\n", "requirements.txt": "uvicorn\n", "main.py": ASGI, "railway.toml": railway},
                    variables=("GREETING=hello-from-variables",), secrets=("API_TOKEN=s3cr3t-token-value",))
    log = push(plane, repo)
    assert "asked by runtime.txt: 3.10" in log
    assert "build sees hello-from-variables and ••••••" in log  # the secret reached the build, masked in its log
    assert "s3cr3t-token-value" not in log
    assert "s3cr3t-token-value" not in plane.run("logs", "-e", "production", "--build", cwd=repo).stdout
    answer = plane.get("corpus-runtime.localhost", "/").json()
    assert answer["python"].startswith("3.10.") and answer["built"] == "hello-from-variables"


def test_the_operators_index_wins_over_an_index_line_in_requirements(corpus_plane, tmp_path):
    plane = corpus_plane
    repo = make_app(plane, tmp_path, "corpus-index", {
        "requirements.txt": "-i http://127.0.0.1:9/simple\nuvicorn\n", "main.py": ASGI, "railway.toml": START})
    log = push(plane, repo)
    assert (f"ignored `-i http://127.0.0.1:9/simple` (requirements.txt line 1): the operator's package index "
            f"{OPERATOR_INDEX} is used") in log
    assert "127.0.0.1:9/simple/uvicorn" not in log  # pip never asked the app's index
    assert plane.get("corpus-index.localhost", "/").json()["version"] == "v1"


def test_a_failing_install_names_the_line_at_fault(corpus_plane, tmp_path):
    plane = corpus_plane
    repo = make_app(plane, tmp_path, "corpus-badreq", {
        "requirements.txt": "uvicorn\nbranchyard-no-such-package-xyz==9.9.9\n", "main.py": ASGI, "railway.toml": START})
    done = plane.git(repo, "push", "branchyard", "main", check=False)
    assert done.returncode != 0
    [dep] = plane.json("deployments", "-e", "production", cwd=repo)
    assert dep["status"] == "FAILED"
    assert dep["error"] == ("build failed: `pip install -r requirements.txt` exited with code 1: requirements.txt line 2: "
                            "`branchyard-no-such-package-xyz==9.9.9` not found on the package index")


def test_pyproject_only_app_installs_itself_in_a_layer_and_a_code_push_reinstalls_no_dependency(corpus_plane, tmp_path):
    plane = corpus_plane
    pyproject = textwrap.dedent("""
        [project]
        name = "corpus-project"
        version = "0.1.0"
        dependencies = ["uvicorn"]

        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [tool.setuptools]
        py-modules = ["main"]
        """)
    repo = make_app(plane, tmp_path, "corpus-project", {"pyproject.toml": pyproject, "main.py": ASGI, "railway.toml": START})
    log = push(plane, repo)
    assert "installer: pip-project (pyproject.toml)" in log
    assert "$ pip install uvicorn" in log and "$ uv pip install --no-deps -e ." in log
    assert "installing the app into a layer of its own" in log and "private to this release" not in log
    assert plane.get("corpus-project.localhost", "/").json()["version"] == "v1"

    (repo / "main.py").write_text(ASGI.replace('VERSION = "v1"', 'VERSION = "v2"'))
    plane.commit(repo, "v2")
    log = push(plane, repo)
    assert "(dependencies cached)" in log and "$ pip install uvicorn" not in log
    assert not [line for line in log.splitlines() if " + " in line]  # nothing installed: the app's layer is reused
    assert "reusing the app's layer of" in log and "$ uv pip install" not in log
    assert "Collecting uvicorn" not in log and "Successfully installed" not in log
    assert plane.get("corpus-project.localhost", "/").json()["version"] == "v2"


def test_no_installer_is_said_in_the_build_log(corpus_plane, tmp_path):
    plane = corpus_plane
    repo = make_app(plane, tmp_path, "corpus-bare", {"main.py": ASGI, "railway.toml": START.replace(
        "uvicorn main:app --host 0.0.0.0 --port $PORT", "python -m http.server $PORT")})
    log = push(plane, repo)
    assert "installer: none (nothing)" in log
    assert "note: no dependencies installed: the app has no requirements.txt, pyproject.toml" in log


def test_a_python_the_machine_lacks_is_refused_before_building(corpus_plane, tmp_path):
    plane = corpus_plane
    repo = make_app(plane, tmp_path, "corpus-py35", {".python-version": "3.5\n", "requirements.txt": "uvicorn\n",
                                                     "main.py": ASGI, "railway.toml": START})
    done = plane.git(repo, "push", "branchyard", "main", check=False)
    assert done.returncode != 0
    message = ("Python 3.5 (from .python-version) is not installed on this machine: install `pyenv install 3.5` or "
               "`uv python install 3.5`, or let branchyard download it: BRANCHYARD_PYTHON_DOWNLOADS=1; or change .python-version")
    assert message in done.stderr
    [dep] = plane.json("deployments", "-e", "production", cwd=repo)
    assert (dep["status"], dep["error"]) == ("FAILED", message)
    assert "creating virtualenv" not in done.stderr and "$ pip install" not in done.stderr  # nothing was built
    events = plane.json("events", "-e", "production", cwd=repo)
    assert any(e["kind"] == "deploy.failed" and "Python 3.5" in e["message"] for e in events)


def locked_with(tool: str, venv_cache: Path, repo: Path, *args: str) -> None:
    """Lock `repo` with the real tool, the same one the build installs into its cache on first use."""
    from branchyard.build import tools

    def run(argv, label):
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{label}: {done.stderr[-2000:]}"

    exe = tools.ensure(tool, venv_cache, run=run, log=lambda _: None)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PIPENV_VENV_IN_PROJECT": "1", "PIPENV_VERBOSITY": "-1"}
    done = subprocess.run([exe, *args], cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_poetry_lock_is_installed_with_poetry(corpus_plane, tmp_path, venv_cache):
    plane = corpus_plane
    pyproject = textwrap.dedent("""
        [project]
        name = "corpus-poetry"
        version = "0.1.0"
        requires-python = ">=3.10"
        dependencies = ["uvicorn"]

        [tool.poetry]
        package-mode = false
        """)
    repo = make_app(plane, tmp_path, "corpus-poetry", {"pyproject.toml": pyproject, "main.py": ASGI, "railway.toml": START})
    locked_with("poetry", venv_cache, repo, "lock", "--no-interaction")
    plane.commit(repo, "poetry.lock")
    log = push(plane, repo)
    assert "installer: poetry (pyproject.toml + poetry.lock)" in log
    assert "$ poetry install --no-root --only main" in log
    assert plane.get("corpus-poetry.localhost", "/").json()["version"] == "v1"


# As `pipenv install` writes it: with its [[source]] (without one, pipenv counts pip's configuration into the lock's
# hash, and a build on another machine refuses the lock).
PIPFILE = '[[source]]\nurl = "https://pypi.org/simple"\nverify_ssl = true\nname = "pypi"\n\n[packages]\nuvicorn = "*"\n'


def test_pipfile_lock_is_installed_with_pipenv(corpus_plane, tmp_path, venv_cache):
    plane = corpus_plane
    repo = make_app(plane, tmp_path, "corpus-pipenv", {"Pipfile": PIPFILE, "main.py": ASGI,
                                                       "railway.toml": START, ".gitignore": ".venv/\n"})
    locked_with("pipenv", venv_cache, repo, "lock")
    plane.commit(repo, "Pipfile.lock")
    log = push(plane, repo)
    assert "installer: pipenv (Pipfile + Pipfile.lock)" in log
    assert "$ pipenv install --system --deploy" in log
    assert plane.get("corpus-pipenv.localhost", "/").json()["version"] == "v1"


DJANGO = {
    "manage.py": textwrap.dedent("""
        import os, sys
        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
            from django.core.management import execute_from_command_line
            execute_from_command_line(sys.argv)
        """),
    "proj/__init__.py": "",
    "proj/settings.py": 'SECRET_KEY = "corpus"\nDEBUG = False\nALLOWED_HOSTS = ["*"]\nROOT_URLCONF = "proj.urls"\n'
                        "INSTALLED_APPS = []\nMIDDLEWARE = []\nDATABASES = {}\n",
    "proj/urls.py": textwrap.dedent("""
        import sys
        from django.http import JsonResponse
        from django.urls import path

        VERSION = "v1"

        def root(request):
            return JsonResponse({"python": "%d.%d.%d" % sys.version_info[:3], "version": VERSION})

        urlpatterns = [path("", root)]
        """),
    "proj/wsgi.py": 'import os\nfrom django.core.wsgi import get_wsgi_application\n'
                    'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")\napplication = get_wsgi_application()\n',
    "pyproject.toml": '[project]\nname = "corpus-django"\nversion = "0.1.0"\n\n[build-system]\nrequires = ["setuptools>=61"]\n'
                      'build-backend = "setuptools.build_meta"\n\n[tool.setuptools]\npackages = ["proj"]\n',
    "requirements.txt": "django\ngunicorn\n-e .\n",
}


def test_django_installing_itself_gets_an_inferred_gunicorn_and_a_code_push_reinstalls_no_dependency(corpus_plane, tmp_path):
    plane = corpus_plane
    repo = make_app(plane, tmp_path, "corpus-django", DJANGO)
    log = push(plane, repo)
    assert "start command: gunicorn proj.wsgi --bind 0.0.0.0:$PORT (inferred: Django project proj (manage.py, " \
           "proj/wsgi.py, gunicorn a dependency))" in log
    assert "$ pip install -r requirements.txt (its dependency lines)" in log
    assert "$ uv pip install --no-deps -r requirements.txt (its local lines: -e .)" in log
    assert plane.get("corpus-django.localhost", "/").json()["version"] == "v1"

    (repo / "proj" / "urls.py").write_text(DJANGO["proj/urls.py"].replace('VERSION = "v1"', 'VERSION = "v2"'))
    plane.commit(repo, "v2")
    log = push(plane, repo)
    assert "(dependencies cached)" in log and "its dependency lines" not in log
    assert not [line for line in log.splitlines() if " + " in line]  # nothing installed: the app's layer is reused
    assert "reusing the app's layer of" in log and "$ uv pip install" not in log
    assert "Successfully installed" not in log
    assert plane.get("corpus-django.localhost", "/").json()["version"] == "v2"
