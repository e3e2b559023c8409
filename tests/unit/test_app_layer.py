"""The app's layer reused across releases: when it may be (reuse_key), which one (find_source), and the copy with
its directories relocated (relocate)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from branchyard.build import app_layer
from branchyard.build.steps import editable_projects

STATIC = ('[project]\nname = "shop"\nversion = "1.0"\n'
          '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n')


def app(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def key(src: Path, projects: tuple[str, ...] = (".",), **kw: str) -> app_layer.Reuse:
    args = {"base": "venv1", "steps": ["uv pip install --no-deps -e ."], "tools": "uv 1"} | kw
    return app_layer.reuse_key(src, projects=projects, base=args["base"], steps=[args["steps"]] if isinstance(
        args["steps"], str) else args["steps"], tools=args["tools"])


@pytest.mark.parametrize(("files", "reason"), [
    ({"pyproject.toml": STATIC}, None),
    ({"pyproject.toml": '[tool.poetry]\nname = "shop"\nversion = "1.0"\n'}, None),
    ({"pyproject.toml": STATIC.replace('version = "1.0"', 'dynamic = ["version"]')},
     "pyproject.toml: [project] dynamic = ['version']: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": STATIC, "setup.py": "from setuptools import setup\nsetup()\n"},
     "has a setup.py: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": STATIC, "setup.cfg": "[metadata]\nversion = attr: shop.__version__\n"},
     "has a setup.cfg: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": STATIC + "[tool.hatch.build.hooks.custom]\n"},
     "pyproject.toml: hatch build hooks: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": STATIC + "[tool.hatch.build.targets.wheel.hooks.vcs]\n"},
     "pyproject.toml: hatch build hooks: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": STATIC + "[tool.hatch.metadata.hooks.custom]\n"},
     "pyproject.toml: hatch metadata hooks: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": '[tool.poetry]\nname = "shop"\nversion = "1.0"\nbuild = "build.py"\n'},
     "pyproject.toml: [tool.poetry] build script: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": '[build-system]\nrequires = ["flit_core"]\n'},
     "pyproject.toml has no [project] table: the metadata may be computed, so the app is installed every build"),
    ({"main.py": ""}, "has no pyproject.toml: the metadata may be computed, so the app is installed every build"),
    ({"pyproject.toml": "[project\n"}, "pyproject.toml cannot be read: the metadata may be computed, so the app is installed every build"),
])
def test_reuse_needs_metadata_stated_in_pyproject(tmp_path, files, reason):
    found = key(app(tmp_path, {"main.py": "", **files}))
    assert found.reason == (reason or "packaging files and file list")
    assert (found.key is None) == (reason is not None)


def test_the_key_follows_packaging_files_and_the_file_list_not_the_code(tmp_path):
    def make(name: str, files: dict[str, str]) -> str | None:
        return key(app(tmp_path / name, {"pyproject.toml": STATIC, "main.py": "V = 1\n", "pkg/__init__.py": "", **files})).key

    base = make("a", {})
    assert base is not None
    assert make("same", {}) == base
    assert make("code-changed", {"main.py": "V = 2\n", "pkg/__init__.py": "X = 1\n"}) == base
    assert make("file-added", {"pkg/new.py": ""}) != base
    assert make("packaging-changed", {"pyproject.toml": STATIC.replace("1.0", "1.1")}) != base
    assert make("manifest-added", {"MANIFEST.in": "include *.txt\n"}) != base
    src = app(tmp_path / "b", {"pyproject.toml": STATIC, "main.py": "V = 1\n", "pkg/__init__.py": ""})
    assert key(src).key == base
    assert key(src, base="venv2").key != base  # other dependencies
    assert key(src, tools="uv 2").key != base  # another uv
    assert key(src, steps="uv pip install --no-deps -r .branchyard-local.txt").key != base
    # the build's own files and caches are not the app's
    app(src, {".branchyard-local.txt": "-e .\n", "pkg/__pycache__/x.pyc": ""})
    assert key(src).key == base


def test_projects_in_subdirectories_are_checked_each(tmp_path):
    src = app(tmp_path, {"pyproject.toml": STATIC, "lib/pyproject.toml": STATIC.replace("shop", "lib")})
    assert key(src, (".", "./lib")).key is not None
    app(src, {"lib/setup.py": ""})
    assert key(src, (".", "./lib")).reason.startswith("./lib: has a setup.py")
    assert key(src, ("./missing",)).reason == "./missing: not a directory of the app"


@pytest.mark.parametrize(("lines", "expected"), [
    ("-e .\n", ["."]),
    ("-e ./lib\n--editable=./other[extra]\n-e.\n", ["./lib", "./other", "."]),
    ("-e .[dev]\n", ["."]),
    (".\n", None),  # a copy
    ("-e .\n./pkg\n", None),
    ("-e git+https://example.com/x.git#egg=x\n", None),
    ("-e ../outside\n", None),
    ("-e /abs/path\n", None),
    ("", None),
])
def test_editable_projects_of_requirements_local_lines(lines, expected):
    assert editable_projects(lines) == expected


def make_layer(root: Path, release: Path) -> Path:
    layer = root / "layers" / "dep-a"
    site = layer / "lib" / "python3.11" / "site-packages"
    app(site, {"__editable__.shop.pth": f"{release}\n",
               "shop-1.0.dist-info/direct_url.json": json.dumps({"url": f"file://{release}"}),
               "__pycache__/finder.cpython-311.pyc": f"\0{release}\0"})
    app(layer, {"bin/shop": f"#!{layer}/bin/python\nimport shop\n", "pyvenv.cfg": "home = /usr/bin\n"})
    (layer / "bin" / "python").symlink_to("/usr/bin/python3")
    (layer / "bin" / "self").symlink_to(f"{layer}/bin/shop")
    app_layer.write_marker(layer, key="k1", src=release)
    return layer


def test_relocate_rewrites_both_directories_and_leaves_caches_behind(tmp_path):
    release_a, release_b = tmp_path / "releases" / "a", tmp_path / "releases" / "b"
    source = make_layer(tmp_path, release_a)
    found = app_layer.find_source(source.parent, "k1", exclude=source.parent / "dep-b")
    assert found is not None and found[0] == source
    dest = source.parent / "dep-b"
    rewritten = app_layer.relocate(found[0], found[1], dest, release_b)
    site = dest / "lib" / "python3.11" / "site-packages"
    assert (site / "__editable__.shop.pth").read_text() == f"{release_b}\n"
    assert json.loads((site / "shop-1.0.dist-info" / "direct_url.json").read_text()) == {"url": f"file://{release_b}"}
    assert (dest / "bin" / "shop").read_text().startswith(f"#!{dest}/bin/python\n")
    assert os.readlink(dest / "bin" / "python") == "/usr/bin/python3"
    assert os.readlink(dest / "bin" / "self") == f"{dest}/bin/shop"
    assert not (site / "__pycache__").exists() and not (dest / app_layer.MARKER).exists()
    assert rewritten == 4
    assert sorted(p.name for p in source.parent.iterdir()) == ["dep-a", "dep-b"]  # no temporary copy left


def test_relocate_refuses_a_binary_file_naming_an_old_directory(tmp_path):
    release_a = tmp_path / "releases" / "a"
    source = make_layer(tmp_path, release_a)
    app(source, {"lib/native.so": f"ELF\0{release_a}\0"})
    dest = source.parent / "dep-b"
    with pytest.raises(app_layer.CannotRelocate, match=r"^lib/native.so is binary and names "):
        app_layer.relocate(source, json.loads((source / app_layer.MARKER).read_text()), dest, tmp_path / "releases" / "b")
    assert not dest.exists()
    assert sorted(p.name for p in source.parent.iterdir()) == ["dep-a"]


def test_a_source_gone_meanwhile_cannot_be_relocated(tmp_path):
    marker = {"key": "k1", "src": str(tmp_path / "a"), "layer": str(tmp_path / "layers" / "gone")}
    with pytest.raises(app_layer.CannotRelocate, match="^copying gone: "):
        app_layer.relocate(tmp_path / "layers" / "gone", marker, tmp_path / "layers" / "new", tmp_path / "b")


def test_find_source_takes_the_newest_complete_layer_with_the_key(tmp_path):
    older = make_layer(tmp_path, tmp_path / "r1")
    newer = older.parent / "dep-z"
    newer.mkdir()
    app_layer.write_marker(newer, key="k1", src=tmp_path / "r2")
    os.utime(older / app_layer.MARKER, (1, 1))
    other = older.parent / "dep-other"
    other.mkdir()
    app_layer.write_marker(other, key="k2", src=tmp_path / "r3")
    (older.parent / "dep-incomplete").mkdir()  # no marker: being built, or failed
    assert app_layer.find_source(older.parent, "k1", exclude=older.parent / "x")[0] == newer
    assert app_layer.find_source(older.parent, "k1", exclude=newer)[0] == older
    assert app_layer.find_source(older.parent, "k3", exclude=newer) is None
    assert app_layer.find_source(tmp_path / "nowhere", "k1", exclude=newer) is None
