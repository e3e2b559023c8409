"""Corpus apps (tests/e2e/test_app_corpus_build.py): first push (cold cache) and a code-only second push → serving
the new code, against a bare start of the same app with the same virtualenv, in the same run. Goal (issue 13): the
second push within 2× the bare start (none of these apps has a release command).

    .venv/bin/python benchmarks/bench_corpus.py          # ROUNDS=3 for three rounds
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import BY, ROOT, sh

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import GIT_ENV, free_port  # noqa: E402
from test_app_corpus_build import ASGI, DJANGO, FASTAPI, START  # noqa: E402

from branchyard.build import interpreters  # noqa: E402
from branchyard.build.detect import PythonRequest  # noqa: E402

PROJECT = ('[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = [{deps}]\n\n[build-system]\n'
           'requires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n[tool.setuptools]\npy-modules = ["main"]\n')
APPS = {
    "fastapi-uv": ({"pyproject.toml": PROJECT.format(name="fastapi-uv", deps='"fastapi", "uvicorn"'), ".python-version": "3.12\n",
                    "main.py": FASTAPI}, "main.py", "uvicorn main:app --host 127.0.0.1 --port {port}"),
    "pyproject-only": ({"pyproject.toml": PROJECT.format(name="pyproject-only", deps='"uvicorn"'), "main.py": ASGI,
                        "railway.toml": START}, "main.py", "uvicorn main:app --host 127.0.0.1 --port {port}"),
    "django": (DJANGO, "proj/urls.py", "gunicorn proj.wsgi --bind 127.0.0.1:{port}"),
}


def serving(url: str, host: str | None, version: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, headers={"Host": host} if host else {}, timeout=2, trust_env=False)
            if r.status_code == 200 and r.json().get("version") == version:
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.01)
    raise SystemExit(f"{url} never served {version}")


def one(name: str, files: dict[str, str], code_file: str, bare_cmd: str) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="by-bench-corpus-"))
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHYARD_")} | GIT_ENV | {
        "BRANCHYARD_HOME": str(tmp / "home"), "BRANCHYARD_HTTP_PORT": str(http_port), "HOME": str(tmp)}
    repo = tmp / name
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    sh(BY + ["server", "--detach"], env=env)
    try:
        sh(["git", "init", "-q", "--initial-branch=main"], cwd=repo, env=env)
        if name == "fastapi-uv":
            py = interpreters.choose(PythonRequest("3.12", "bench"), default=sys.executable).path
            sh([interpreters.uv_binary(), "lock", "--python", py], cwd=repo, env=env | {"UV_PYTHON_DOWNLOADS": "never"})
        sh(["git", "add", "-A"], cwd=repo, env=env)
        sh(["git", "commit", "-qm", "v1"], cwd=repo, env=env)
        sh(BY + ["init"], cwd=repo, env=env)
        url, host = f"http://127.0.0.1:{http_port}/", f"{name}.localhost"
        started = time.monotonic()
        sh(["git", "push", "-q", "branchyard", "main"], cwd=repo, env=env)
        serving(url, host, "v1")
        first = time.monotonic() - started
        code = repo / code_file
        code.write_text(code.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
        sh(["git", "commit", "-qam", "v2"], cwd=repo, env=env)
        started = time.monotonic()
        push = subprocess.Popen(["git", "push", "-q", "branchyard", "main"], cwd=repo, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        serving(url, host, "v2")  # while the push still streams the old deployment's drain
        second = time.monotonic() - started
        if push.wait() != 0:
            raise SystemExit(f"{name}: the second push failed")
        returned = time.monotonic() - started
        deps = json.loads(sh(BY + ["deployments", "-e", "production", "--json"], cwd=repo, env=env))
        release = tmp / "home" / "releases" / name / deps[0]["id"]
        venv = Path(json.loads((release / ".branchyard-release.json").read_text())["venv"])
        port = free_port()
        started = time.monotonic()
        proc = subprocess.Popen(["/bin/sh", "-c", bare_cmd.format(port=port)], cwd=release, start_new_session=True,
                                env={"PATH": f"{venv}/bin:/usr/bin:/bin", "HOME": str(tmp)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            serving(f"http://127.0.0.1:{port}/", None, "v2")
            bare = time.monotonic() - started
        finally:
            os.killpg(proc.pid, 15)
            proc.wait()
        return {"first": first, "second": second, "returned": returned, "bare": bare}
    finally:
        subprocess.run(BY + ["server", "stop", "--all"], env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    rounds = int(os.environ.get("ROUNDS", "1"))
    print("code push: `git push` of a code-only commit → the router serves the new code (the push itself returns")
    print("once the old deployment is told to drain: 'push returns'). bare start: the same release started by hand.")
    print(f"{'app':16} {'first push':>11} {'code push':>10} {'push returns':>13} {'bare start':>11} {'code/bare':>10}")
    for _ in range(rounds):
        for name, (files, code_file, bare_cmd) in APPS.items():
            r = one(name, files, code_file, bare_cmd)
            print(f"{name:16} {r['first']:10.2f}s {r['second']:9.2f}s {r['returned']:12.2f}s {r['bare']:10.2f}s "
                  f"{r['second'] / r['bare']:9.1f}×")


if __name__ == "__main__":
    main()
