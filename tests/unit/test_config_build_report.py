"""`config check` / `config show` name the interpreter, installer and start command the build will use, with sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BRANCHYARD = [sys.executable, "-m", "branchyard.cli.main"]
FASTAPI = "from fastapi import FastAPI\n\napp = FastAPI()\n"


def cli(app: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | {"NO_COLOR": "1", "TERM": "dumb",
                                                                                       "COLUMNS": "200"}
    return subprocess.run([*BRANCHYARD, "config", *args, "--path", str(app)], env=env, capture_output=True, text=True,
                          timeout=60)


def app(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "myapp"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_check_names_what_the_build_reads_and_accepts_an_inferred_start_command(tmp_path):
    root = app(tmp_path, {"main.py": FASTAPI, ".python-version": "3.12\n", "uv.lock": "",
                          "pyproject.toml": '[project]\nname = "a"\nversion = "1"\ndependencies = ["fastapi"]\n'})
    done = cli(root, "check")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1:] == [
        "python: 3.12 (.python-version)",
        "installer: uv sync --frozen (pyproject.toml + uv.lock)",
        "start command: uvicorn main:app --host 0.0.0.0 --port $PORT (inferred: FastAPI app in main.py)",
    ]


def test_check_warns_when_nothing_installs_dependencies(tmp_path):
    done = cli(app(tmp_path, {"main.py": FASTAPI}), "check")
    assert done.returncode == 0
    assert "python: the server's default (BRANCHYARD_PYTHON) (default: the app names no version)" in done.stdout
    assert done.stderr == ("warning: no dependencies installed: the app has no requirements.txt, pyproject.toml (with or "
                           "without uv.lock / poetry.lock) or Pipfile; add one listing what it imports\n")


def test_check_still_refuses_an_app_with_no_start_command_to_infer(tmp_path):
    done = cli(app(tmp_path, {"requirements.txt": "flask\n", "worker.py": "print('hi')\n"}), "check")
    assert done.returncode == 2
    assert "production: no start command" in done.stderr


def test_check_refuses_unreadable_build_files_in_one_line(tmp_path):
    done = cli(app(tmp_path, {"main.py": FASTAPI, "runtime.txt": "3.12\n", "requirements.txt": "fastapi\n"}), "check")
    assert (done.returncode, done.stderr) == (2, "error: runtime.txt: expected python-3.X or python-3.X.Y, got '3.12'\n")
    done = cli(app(tmp_path / "p", {"main.py": FASTAPI, "Pipfile": "[packages]\nfastapi = \"*\"\n"}), "check")
    assert (done.returncode, done.stderr) == (2, "error: Pipfile: no Pipfile.lock next to it: run `pipenv lock` and commit Pipfile.lock\n")


def test_show_gives_the_inferred_start_command_and_the_build_with_sources(tmp_path):
    root = app(tmp_path, {"app.py": "from flask import Flask\napp = Flask(__name__)\n", "runtime.txt": "python-3.11\n",
                          "requirements.txt": "flask\ngunicorn\n"})
    data = json.loads(cli(root, "show", "-e", "production", "--json").stdout)
    assert data["web"]["start_command"] == "gunicorn app:app --bind 0.0.0.0:$PORT"
    assert data["sources"]["web.start_command"] == "inferred: Flask app in app.py"
    assert data["build"] == {"python": {"value": "3.11", "from": "runtime.txt"},
                             "installer": {"value": "pip (requirements.txt)", "from": "requirements.txt"}}
    table = cli(root, "show", "-e", "production").stdout
    assert "build.python" in table and "runtime.txt" in table and "inferred: Flask app in app.py" in table


def test_a_build_command_that_installs_is_named_as_the_installer(tmp_path):
    root = app(tmp_path, {"main.py": FASTAPI, "requirements.txt": "fastapi\n",
                          "railway.toml": '[build]\nbuildCommand = "pip install -r requirements.txt && echo done"\n'})
    done = cli(root, "check")
    assert "installer: pip install -r requirements.txt (buildCommand)" in done.stdout.splitlines()
