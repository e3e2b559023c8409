"""Releases packed into one archive (the slug model): a real layered build, packed for another directory, unpacked
there with the data filter a pod uses, runs its console script and imports its dependency and its code from there —
with the build's own directories moved away; the archive is deterministic, and what cannot be relocated is refused."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import textwrap
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from branchyard.build.archive import CannotPack, Packed, pack
from branchyard.build.release import BuildResult, build

pytestmark = pytest.mark.integration

PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
PYPROJECT = textwrap.dedent("""
    [project]
    name = "slug-{token}"
    version = "0.1"
    dependencies = ["six"]
    [project.scripts]
    shop-where = "shop:where"
    [build-system]
    requires = ["setuptools>=64"]
    build-backend = "setuptools.build_meta"
    [tool.setuptools]
    py-modules = ["shop"]
    """)
SHOP = "import six\n\n\ndef where():\n    print(__file__)\n"


@dataclass(frozen=True)
class Built:
    root: Path  # holds the release directory and the build cache: moved away to prove the unpacked copy stands alone
    src: Path
    result: BuildResult


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A real build: `six` in the shared virtualenv, the app installed editable into a layer over it."""
    root = tmp_path_factory.mktemp("built")
    src = root / "release one"  # a space: the editable install's file:// URL names it quoted
    write(src, {"pyproject.toml": PYPROJECT.format(token=root.name.replace("_", "-")[-20:]), "shop.py": SHOP,
                "migrations/001.py": "STEP = 1\n", "bin/manage": "#!/bin/sh\necho manage\n",
                ".git/HEAD": "ref: refs/heads/main\n", "__pycache__/stale.cpython-311.pyc": "stale"})
    (src / "bin" / "manage").chmod(0o700)  # pods run as another user: packed 0o755
    (src / "migrations" / "001.py").chmod(0o600)  # packed 0o644
    (src / "latest.py").symlink_to("migrations/001.py")
    lines: list[str] = []
    result = build(src, None, cache_dir=root / "cache", python=sys.executable, log=lines.append,
                   layer_dir=root / "cache" / "layers" / "d1")
    assert result.layered and result.dependencies is not None and result.venv != result.dependencies, lines
    return Built(root, src, result)


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """A source directory and a bare virtualenv (no pip): enough for what pack refuses and for its determinism."""
    src = tmp_path / "src"
    write(src, {"main.py": "print('one')\n", "pkg/__init__.py": ""})
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return src, venv


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def pack_built(built: Built, dest: Path, **kw: str) -> Packed:
    return pack(dest, src=built.src, venv=built.result.venv, dependencies=built.result.dependencies, **kw)


def run(argv: list[str]) -> list[str]:
    done = subprocess.run(argv, capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_a_release_runs_where_it_is_unpacked(built: Built, tmp_path: Path) -> None:
    app = tmp_path / "app"
    runtime = os.path.realpath(built.result.venv / "bin" / "python")
    packed = pack_built(built, tmp_path / "release.tar.gz", app_dir=str(app), runtime_python=runtime)
    moved = built.root.rename(built.root.with_name(built.root.name + "-moved"))
    try:
        with tarfile.open(packed.path) as tar:
            tar.extractall(app, filter="data")  # as a pod does: refuses absolute names and links leaving the tree
        for member, target in packed.interpreter_links:
            os.symlink(target, app / member)
        python = str(app / ".venv" / "bin" / "python")
        code = "import six, shop, sys; print(six.__file__); print(shop.__file__); print(sys.prefix)"
        assert run([python, "-c", code]) == [f"{app}/.deps/lib/{PY}/site-packages/six.py", f"{app}/shop.py", f"{app}/.venv"]
        assert run([str(app / ".venv" / "bin" / "shop-where")]) == [f"{app}/shop.py"]
        [pip] = run([str(app / ".venv" / "bin" / "pip"), "--version"])  # the shared venv's script, re-pointed by the layer
        assert f" from {app}/.deps/lib/{PY}/site-packages/pip " in pip
        assert run([str(app / "bin" / "manage")]) == ["manage"]
        old = [str(built.root).encode(), urllib.parse.quote(str(built.root)).encode()]
        naming = [p for p in app.rglob("*") if p.is_file() and not p.is_symlink() and any(o in p.read_bytes() for o in old)]
        assert naming == []
    finally:
        moved.rename(built.root)


def test_the_archive_is_what_a_pod_may_unpack(built: Built, tmp_path: Path) -> None:
    packed = pack_built(built, tmp_path / "release.tar.gz", app_dir="/app", runtime_python="/usr/local/bin/python3.11")
    with tarfile.open(packed.path) as tar:
        members = tar.getmembers()
        text = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
    names = [m.name for m in members]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert not [n for n in names if n.startswith("/") or ".." in n.split("/")]
    assert not [n for n in names if {".git", "__pycache__"} & set(n.split("/")) or ".branchyard-" in n]
    assert {"shop.py", "migrations/001.py", "pyproject.toml", ".venv/pyvenv.cfg", ".deps/pyvenv.cfg"} <= set(names)
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 0)}
    by_name = {m.name: m for m in members}
    assert {m.mode for m in members if m.isdir()} == {0o755}
    assert [by_name[n].mode for n in ("shop.py", "migrations/001.py", "bin/manage", ".venv/bin/shop-where")] == [
        0o644, 0o644, 0o755, 0o755]
    assert by_name["latest.py"].linkname == "migrations/001.py"
    assert packed.files == len(text) + sum(m.issym() for m in members)
    assert sorted(os.path.dirname(m) for m, _ in packed.interpreter_links) == [".deps/bin", ".venv/bin"]
    assert {t for _, t in packed.interpreter_links} == {"/usr/local/bin/python3.11"}
    for cfg in (".venv/pyvenv.cfg", ".deps/pyvenv.cfg"):
        lines = text[cfg].decode().splitlines()
        assert "home = /usr/local/bin" in lines and "executable = /usr/local/bin/python3.11" in lines
        assert not [line for line in lines if line.startswith("command")]
    site = f".venv/lib/{PY}/site-packages"
    assert text[f"{site}/_branchyard_dependencies.pth"] == f"import site; site.addsitedir('/app/.deps/lib/{PY}/site-packages')\n".encode()
    assert text[".venv/bin/shop-where"].startswith(b"#!/app/.venv/bin/python")
    old = [str(built.root).encode(), urllib.parse.quote(str(built.root)).encode()]
    assert [n for n, data in text.items() if any(o in data for o in old)] == []
    assert packed.rewritten >= 4  # both pyvenv.cfg, the layer's .pth, the console script
    assert packed.size == packed.path.stat().st_size
    assert packed.sha256 == hashlib.sha256(packed.path.read_bytes()).hexdigest()


def test_the_same_inputs_give_the_same_bytes_and_a_changed_file_another(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    src, venv = tiny
    first = pack(tmp_path / "a.tar.gz", src=src, venv=venv, dependencies=None)
    for path in [*src.rglob("*"), src]:
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)  # a new export: new times, same contents
    again = pack(tmp_path / "b.tar.gz", src=src, venv=venv, dependencies=venv)  # the shared venv as the venv: no .deps
    assert again.sha256 == first.sha256 and again.path.read_bytes() == first.path.read_bytes()
    assert first.path.read_bytes()[3:8] == bytes(5)  # gzip header: no file name flag, mtime 0
    assert pack(tmp_path / "c.tar.gz", src=src, venv=venv, dependencies=None, mtime=1_700_000_000).sha256 != first.sha256
    (src / "main.py").write_text("print('two')\n")
    assert pack(tmp_path / "d.tar.gz", src=src, venv=venv, dependencies=None).sha256 != first.sha256


def test_a_binary_file_naming_a_build_directory_is_refused(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    src, venv = tiny
    native = venv / "lib" / PY / "site-packages" / "native.so"
    native.write_bytes(b"\x7fELF\0\0rpath=" + str(venv).encode() + b"/lib\0")
    dest = tmp_path / "out" / "release.tar.gz"
    dest.parent.mkdir()
    with pytest.raises(CannotPack, match=rf"^pack: {native} is binary and names a build directory, "):
        pack(dest, src=src, venv=venv, dependencies=None)
    assert list(dest.parent.iterdir()) == []  # neither the archive nor its temporary sibling
    native.write_bytes(b"\x7fELF\0\0no path here\0")
    assert pack(dest, src=src, venv=venv, dependencies=None).path == dest


@pytest.mark.parametrize("target", ["/etc/hostname", "../../outside.py"])
def test_a_symlink_leaving_the_source_is_refused(tiny: tuple[Path, Path], tmp_path: Path, target: str) -> None:
    src, venv = tiny
    (src / "pkg" / "leak.py").symlink_to(target)
    dest = tmp_path / "release.tar.gz"
    with pytest.raises(CannotPack, match=rf"^pack: {src}/pkg/leak.py is a symlink to \S+, outside the release$"):
        pack(dest, src=src, venv=venv, dependencies=None)
    assert not dest.exists()


def test_a_virtualenv_of_another_python_or_a_source_with_its_own_venv_is_refused(tiny: tuple[Path, Path],
                                                                                 tmp_path: Path) -> None:
    src, venv = tiny
    with pytest.raises(CannotPack, match=rf"^pack: {venv} is a virtualenv of {PY}, the runtime is /usr/local/bin/python3.9$"):
        pack(tmp_path / "r.tar.gz", src=src, venv=venv, dependencies=None, runtime_python="/usr/local/bin/python3.9")
    (src / ".venv").mkdir()
    with pytest.raises(CannotPack, match=r"the release has its own \.venv, where its virtualenv goes$"):
        pack(tmp_path / "r.tar.gz", src=src, venv=venv, dependencies=None)
    assert not (tmp_path / "r.tar.gz").exists()
