"""Releases exported from real git repositories, and real virtualenv builds (offline)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from branchyard.build.release import (
    RELEASE_MARKER,
    VENV_MARKER,
    BuildResult,
    build,
    dependency_hash,
    export_commit,
    mark_release_complete,
    python_identity,
    read_release_meta,
    release_complete,
    remove_incomplete_releases,
)
from branchyard.errors import BuildFailed

pytestmark = pytest.mark.integration

GIT_ID = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    return subprocess.run(
        ["git", *GIT_ID, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    return work


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- export ----------------------------------------------------------------------------------------


def test_export_commit(repo: Path, tmp_path: Path) -> None:
    write(repo, {"app.py": "print('v1')\n", "pkg/sub/mod.py": "X = 1\n", "run.sh": "#!/bin/sh\necho hi\n"})
    (repo / "run.sh").chmod(0o755)
    (repo / "link.py").symlink_to("app.py")
    (repo / "pkg" / "up").symlink_to("../app.py")
    first = commit_all(repo, "one")
    write(repo, {"app.py": "print('v2')\n"})
    second = commit_all(repo, "two")

    releases = tmp_path / "releases"
    export_commit(repo / ".git", first, releases / "r1")
    export_commit(repo / ".git", second[:10], releases / "r2")  # an abbreviated sha resolves too

    r1 = releases / "r1"
    assert (r1 / "app.py").read_text() == "print('v1')\n"
    assert (r1 / "pkg" / "sub" / "mod.py").read_text() == "X = 1\n"
    assert os.access(r1 / "run.sh", os.X_OK)
    assert not os.access(r1 / "app.py", os.X_OK)
    assert os.readlink(r1 / "link.py") == "app.py"
    assert (r1 / "pkg" / "up").read_text() == "print('v1')\n"
    assert not (r1 / ".git").exists()
    assert stat.S_IMODE(r1.stat().st_mode) == 0o755
    assert (releases / "r2" / "app.py").read_text() == "print('v2')\n"
    assert sorted(p.name for p in releases.iterdir()) == ["r1", "r2"]  # no temp dirs left behind


def test_export_is_idempotent_for_a_complete_release_and_redone_otherwise(repo: Path, tmp_path: Path) -> None:
    write(repo, {"app.py": "A\n"})
    sha = commit_all(repo, "one")
    dest = tmp_path / "releases" / "r"
    export_commit(repo / ".git", sha, dest)
    (dest / "left-over-from-a-failed-build").write_text("x")
    export_commit(repo / ".git", sha, dest)  # not marked complete: exported again, clean
    assert not (dest / "left-over-from-a-failed-build").exists()
    assert (dest / "app.py").read_text() == "A\n"

    mark_release_complete(dest, {"sha": sha})
    (dest / "built-artefact").write_text("x")
    export_commit(repo / ".git", sha, dest)  # complete: left alone
    assert (dest / "built-artefact").exists()
    assert json.loads((dest / RELEASE_MARKER).read_text()) == {"sha": sha}
    assert read_release_meta(dest) == {"sha": sha}
    assert read_release_meta(tmp_path) is None
    assert sorted(p.name for p in dest.parent.iterdir()) == ["r"]


def test_export_of_an_unknown_commit(repo: Path, tmp_path: Path) -> None:
    write(repo, {"app.py": "A\n"})
    sha = commit_all(repo, "one")
    dest = tmp_path / "releases" / "r"
    with pytest.raises(BuildFailed, match=r"^git: commit deadbeefdead not found$"):
        export_commit(repo / ".git", "deadbeef" * 5, dest)
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    with pytest.raises(BuildFailed, match=rf"^git: commit {tree[:12]} not found$"):
        export_commit(repo / ".git", tree, dest)  # an object, but not a commit
    with pytest.raises(BuildFailed, match="not a commit"):
        export_commit(repo / ".git", "--output=/tmp/x", dest)
    with pytest.raises(BuildFailed, match="is not a git repository"):
        export_commit(tmp_path / "nowhere.git", sha, dest)
    assert not dest.parent.exists()  # the commit is looked up before anything is written


@pytest.mark.parametrize("target", ["../../../etc/passwd", "/etc/passwd", "sub/../../outside"])
def test_export_refuses_symlinks_leaving_the_release(repo: Path, tmp_path: Path, target: str) -> None:
    write(repo, {"app.py": "A\n"})
    (repo / "evil").symlink_to(target)
    sha = commit_all(repo, "evil")
    dest = tmp_path / "releases" / "r"
    with pytest.raises(BuildFailed, match=r"refusing symlink evil -> .* points outside the release"):
        export_commit(repo / ".git", sha, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_export_from_a_pre_receive_quarantine(repo: Path, tmp_path: Path) -> None:
    """A pre-receive hook sees the pushed commit only through its quarantine environment."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    out = tmp_path / "hook-result.json"
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""
            import json, os, sys
            from pathlib import Path
            from branchyard.build.release import export_commit
            from branchyard.errors import BuildFailed
            old, new, ref = sys.stdin.readline().split()
            names = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")
            quarantine = {{k: os.environ.pop(k) for k in names if k in os.environ}}
            result = {{"vars": sorted(quarantine)}}
            try:
                export_commit(Path.cwd(), new, Path({str(tmp_path / "without")!r}))
            except BuildFailed as e:
                result["without"] = str(e)
            export_commit(Path.cwd(), new, Path({str(tmp_path / "with")!r}), git_env=quarantine)
            result["with"] = "ok"
            Path({str(out)!r}).write_text(json.dumps(result))
            sys.exit(1)  # reject: the commit never reaches the repository
            """
        )
    )
    hook.chmod(0o755)
    write(repo, {"app.py": "pushed\n"})
    sha = commit_all(repo, "push me")
    push = subprocess.run(["git", "push", str(bare), "HEAD:refs/heads/main"], cwd=repo, capture_output=True, text=True)
    assert push.returncode != 0  # rejected by the hook
    result = json.loads(out.read_text())
    assert "GIT_QUARANTINE_PATH" in result["vars"]
    assert result["without"] == f"git: commit {sha[:12]} not found"
    assert result["with"] == "ok"
    assert (tmp_path / "with" / "app.py").read_text() == "pushed\n"
    with pytest.raises(BuildFailed, match="not found"):  # the quarantine is gone with the rejected push
        export_commit(bare, sha, tmp_path / "after")


def test_release_markers_and_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "releases"
    for name in ("done", "half", ".done2.export-abc"):
        (root / name / "sub").mkdir(parents=True)
    mark_release_complete(root / "done", {"sha": "abc", "when": 1})
    (root / "stray-file").write_text("not a release dir")
    assert release_complete(root / "done")
    assert not release_complete(root / "half")
    removed = remove_incomplete_releases(root)
    assert removed == [root / ".done2.export-abc", root / "half"]
    assert sorted(p.name for p in root.iterdir()) == ["done", "stray-file"]
    assert sorted(p.name for p in (root / "done").iterdir()) == [RELEASE_MARKER, "sub"]  # no temp file left
    assert remove_incomplete_releases(tmp_path / "missing") == []


# -- dependency hash -------------------------------------------------------------------------------


def test_dependency_hash(tmp_path: Path) -> None:
    def src(name: str, files: dict[str, str]) -> Path:
        root = tmp_path / name
        root.mkdir()
        write(root, {"app.py": name, **files})
        return root

    req = {"requirements.txt": "flask==3.0\n", "reqs/base.txt": "click\n"}
    steps = ["pip install -r requirements.txt"]
    a = dependency_hash(src("a", req), python="3.11.7", install_steps=steps)
    assert len(a) == 64
    assert dependency_hash(src("b", req), python="3.11.7", install_steps=steps) == a  # code differs only
    assert dependency_hash(tmp_path / "a", python="3.12.1", install_steps=steps) != a
    assert dependency_hash(tmp_path / "a", python="3.11.7", install_steps=["pip install -r requirements.txt -U"]) != a
    changed = src("c", {**req, "requirements.txt": "flask==3.1\n"})
    assert dependency_hash(changed, python="3.11.7", install_steps=steps) != a
    lock = src("d", {**req, "poetry.lock": "x"})
    assert dependency_hash(lock, python="3.11.7", install_steps=steps) != a
    dev = src("e", {**req, "requirements-dev.txt": "pytest\n"})
    assert dependency_hash(dev, python="3.11.7", install_steps=steps) != a

    # a requirements file named by an install step (and what it includes) counts too
    nested = ["pip install -r reqs/prod.txt"]
    f = src("f", {"reqs/prod.txt": "-r base.txt\n", "reqs/base.txt": "click\n"})
    g = src("g", {"reqs/prod.txt": "-r base.txt\n", "reqs/base.txt": "click==8\n"})
    assert dependency_hash(f, python="3.11.7", install_steps=nested) != dependency_hash(
        g, python="3.11.7", install_steps=nested
    )


# -- build -----------------------------------------------------------------------------------------


SHARED = "# dependencies shared by tests that do not care about caching\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.monotonic(), line))

    @property
    def text(self) -> list[str]:
        return [line for _, line in self.lines]


def make_src(tmp_path: Path, name: str, requirements: str, **files: str) -> Path:
    src = tmp_path / name
    src.mkdir()
    write(src, {"requirements.txt": requirements, "app.py": f"# {name}\n", **files})
    return src


def run_build(src: Path, cmd: str | None, cache: Path, **kw: object) -> tuple[BuildResult, Log]:
    log = Log()
    result = build(src, cmd, cache_dir=cache, python=sys.executable, log=log, **kw)  # type: ignore[arg-type]
    return result, log


def test_build_caches_the_venv_by_dependencies(tmp_path: Path, cache: Path) -> None:
    token = f"# {tmp_path.name}\n"  # unique per test run: the first build cannot be cached
    first, log1 = run_build(make_src(tmp_path, "r1", token), None, cache)
    assert not first.cached
    assert first.venv.parent == cache / "venvs"
    assert (first.venv / VENV_MARKER).is_file()
    assert (first.venv / "bin" / "python").exists()
    assert "$ pip install -r requirements.txt" in log1.text

    second, log2 = run_build(make_src(tmp_path, "r2", token, **{"app.py": "changed code\n"}), None, cache)
    assert second.cached
    assert second.venv == first.venv
    assert "$ pip install -r requirements.txt" not in log2.text
    assert any("using cached virtualenv" in line for line in log2.text)
    assert second.seconds < first.seconds / 3
    print(f"\nuncached build {first.seconds:.2f}s, cached build {second.seconds:.2f}s")

    third, log3 = run_build(make_src(tmp_path, "r3", token + "# changed\n"), None, cache)
    assert not third.cached
    assert third.venv != first.venv
    assert "$ pip install -r requirements.txt" in log3.text


def test_other_steps_run_every_build_with_the_venv_active(tmp_path: Path, cache: Path) -> None:
    show_prefix = 'python -c "import sys; print(sys.prefix)"'
    cmd = f'pip install -r requirements.txt && {show_prefix} && echo "venv=$VIRTUAL_ENV" > built.txt'
    for name in ("r1", "r2"):
        src = make_src(tmp_path, name, SHARED)
        result, log = run_build(src, cmd, cache)
        assert str(result.venv) in log.text
        assert (src / "built.txt").read_text() == f"venv={result.venv}\n"
        assert log.text[-3:] == [
            f"$ {show_prefix}",
            str(result.venv),
            '$ echo "venv=$VIRTUAL_ENV" > built.txt',
        ]
    assert result.cached


def test_a_failing_other_step(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", SHARED)
    with pytest.raises(BuildFailed) as err:
        run_build(src, "pip install -r requirements.txt && echo before && exit 7 && echo never", cache)
    assert str(err.value) == "build failed: `exit 7` exited with code 7"
    # the dependency install succeeded: its venv is complete and reused
    result, log = run_build(make_src(tmp_path, "r2", SHARED), None, cache)
    assert result.cached


def test_a_failing_install_step_leaves_no_venv(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", f"# {tmp_path.name}\n", **{"requirements.txt": "-r missing.txt\n"})
    log = Log()
    with pytest.raises(BuildFailed, match=r"^build failed: `pip install -r requirements.txt` exited with code 1$"):
        build(src, None, cache_dir=cache, python=sys.executable, log=log)
    assert any("missing.txt" in line for line in log.text)  # pip's own error reached the log
    steps = ["pip install -r requirements.txt"]
    venv = cache / "venvs" / dependency_hash(src, python=python_identity(sys.executable), install_steps=steps)
    assert not venv.exists()


def test_an_incomplete_venv_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", f"# {tmp_path.name}\n")
    steps = ["pip install -r requirements.txt"]
    venv = cache / "venvs" / dependency_hash(src, python=python_identity(sys.executable), install_steps=steps)
    (venv / "bin").mkdir(parents=True)
    (venv / "junk").write_text("half-written by a builder that died")
    result, log = run_build(src, None, cache)
    assert result.venv == venv
    assert not result.cached
    assert not (venv / "junk").exists()
    assert (venv / VENV_MARKER).is_file()


def test_output_is_streamed_line_by_line(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", SHARED)
    _, log = run_build(src, "echo one; sleep 1; echo two >&2; printf 'three'", cache)
    times = {line: t for t, line in log.lines}
    assert [line for line in log.text if line in ("one", "two", "three")] == ["one", "two", "three"]
    assert times["two"] - times["one"] > 0.7  # "one" arrived while the step was still running


def test_concurrent_builds_of_the_same_dependencies(tmp_path: Path, cache: Path) -> None:
    token = f"# {tmp_path.name}\n"
    srcs = [make_src(tmp_path, f"r{i}", token) for i in range(2)]
    results: list[tuple[BuildResult, Log]] = []
    errors: list[BaseException] = []

    def one(src: Path) -> None:
        try:
            results.append(run_build(src, None, cache))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(src,)) for src in srcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (first, log1), (second, log2) = sorted(results, key=lambda r: r[0].cached)
    assert (first.cached, second.cached) == (False, True)
    assert first.venv == second.venv
    assert (first.venv / VENV_MARKER).is_file()
    assert any(line.startswith("waiting for another build of virtualenv") for line in log2.text)
    assert "$ pip install -r requirements.txt" not in log2.text


def test_installing_the_app_goes_into_a_layer_of_its_own_over_the_cached_dependencies(tmp_path: Path, cache: Path) -> None:
    """`pip install .` (pyproject only): the dependencies in the shared cached virtualenv, the app in the release's
    own layer; a code-only change reinstalls no dependency."""
    token = tmp_path.name.replace("_", "-")[-20:]
    pyproject = textwrap.dedent(f"""
        [project]
        name = "layered-{token}"
        version = "0.1"
        dependencies = ["idna"]
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [tool.setuptools]
        py-modules = ["layered_app"]
        """)

    def src(name: str, code: str) -> Path:
        root = tmp_path / name
        write(root, {"pyproject.toml": pyproject, "layered_app.py": code})
        return root

    first, log1 = run_build(src("r1", "VERSION = 1\n"), None, cache)
    assert not first.cached and first.layered and first.installer == "pip-project"
    assert "$ pip install idna" in log1.text and "$ uv pip install --no-deps -e ." in log1.text
    second, log2 = run_build(src("r2", "VERSION = 2\n"), None, cache)
    assert second.cached and second.dependencies == first.dependencies
    assert second.venv != first.venv and second.venv.parent == first.venv.parent
    assert "$ pip install idna" not in log2.text
    assert not [line for line in log2.text if "idna" in line and ("Collecting" in line or "Successfully" in line)]
    assert not any("private to this release" in line for line in log1.text + log2.text)

    def run(python: Path, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path)

    for result, version in ((first, 1), (second, 2)):  # each layer has its own app, both see the shared idna
        done = run(result.venv / "bin" / "python", "import idna, layered_app; print(layered_app.VERSION)")
        assert done.stdout.strip() == str(version), done.stderr
    assert run(first.dependencies / "bin" / "python", "import layered_app").returncode != 0  # the shared venv has no app
    # the shared venv's pip, re-pointed: its scripts run with the layer's python — on the `#!` line, or on the `exec`
    # line under `#!/bin/sh` when the interpreter's path is longer than the kernel's shebang limit (127 bytes)
    head = (second.venv / "bin" / "pip").read_text().splitlines()[:2]
    assert head[0].startswith(f"#!{second.venv}/bin/python") or (
        head[0] == "#!/bin/sh" and f"{second.venv}/bin/python" in head[1]), head
    ran = subprocess.run([str(second.venv / "bin" / "pip"), "--version"], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.startswith("pip "), ran.stderr


def test_build_timeout_kills_the_step(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", SHARED)
    run_build(src, None, cache)  # warm the venv: the timeout then only covers the step
    started = time.monotonic()
    with pytest.raises(BuildFailed, match=r"^build failed: `sleep 31.25` timed out$"):
        run_build(src, "pip install -r requirements.txt && sleep 31.25", cache, timeout=1.0)
    assert time.monotonic() - started < 5
    assert not running("sleep 31.25")


def test_a_step_leaving_a_background_process_does_not_hang_the_build(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", SHARED)
    run_build(src, None, cache)
    started = time.monotonic()
    result, log = run_build(src, "pip install -r requirements.txt && sleep 61.25 & echo started", cache)
    assert "started" in log.text
    assert time.monotonic() - started < 6
    assert result.cached
    assert not running("sleep 61.25")  # killed with the step's process group


def test_unknown_python(tmp_path: Path, cache: Path) -> None:
    src = make_src(tmp_path, "r1", SHARED)
    with pytest.raises(BuildFailed, match="python: cannot run `/nonexistent/python3`"):
        build(src, None, cache_dir=cache, python="/nonexistent/python3", log=lambda _: None)


def test_build_env_does_not_leak_control_plane_settings(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRANCHYARD_SECRET", "s3cret")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    src = make_src(tmp_path, "r1", SHARED)
    _, log = run_build(
        src,
        'echo "[${BRANCHYARD_SECRET:-}] [${PYTHONPATH:-}] [$APP_VAR] [$PIP_DISABLE_PIP_VERSION_CHECK]"',
        cache,
        env={"APP_VAR": "given"},
    )
    assert "[] [] [given] [1]" in log.text


def running(args: str) -> bool:
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True, check=True).stdout
    return any(line.split(None, 1)[1:] == [args] and not line.startswith("Z") for line in ps.splitlines())
