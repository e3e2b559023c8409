"""Real builds: a code-only change reuses the app's editable layer, relocated to the new release (its console script
and imports run the new code); changed packaging or files install again; a backend without editable support gets
a copy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from branchyard.build.release import BuildResult, build

pytestmark = pytest.mark.integration

PYPROJECT = textwrap.dedent("""
    [project]
    name = "reuse-{token}"
    version = "0.1"
    dependencies = []
    [project.scripts]
    shop-version = "shop:main"
    [build-system]
    requires = ["setuptools>=64"]
    build-backend = "setuptools.build_meta"
    [tool.setuptools]
    py-modules = ["shop"]
    """)
SHOP = "VERSION = {v}\n\ndef main():\n    print(VERSION)\n"


def release(root: Path, name: str, files: dict[str, str]) -> Path:
    src = root / "releases" / name
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


def run_build(src: Path, cache: Path, name: str) -> tuple[BuildResult, list[str]]:
    lines: list[str] = []
    result = build(src, None, cache_dir=cache, python=sys.executable, log=lines.append, layer_dir=cache / "layers" / name)
    return result, lines


def script(result: BuildResult, name: str) -> str:
    done = subprocess.run([str(result.venv / "bin" / name)], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_code_only_change_reuses_the_layer_relocated_to_the_new_release(tmp_path):
    cache = tmp_path / "cache"
    pyproject = PYPROJECT.format(token=tmp_path.name.replace("_", "-")[-20:])
    first, log1 = run_build(release(tmp_path, "r1", {"pyproject.toml": pyproject, "shop.py": SHOP.format(v=1)}), cache, "d1")
    assert "$ uv pip install --no-deps -e ." in log1 and not any(line.startswith("reusing") for line in log1)
    second, log2 = run_build(release(tmp_path, "r2", {"pyproject.toml": pyproject, "shop.py": SHOP.format(v=2)}), cache, "d2")
    assert "$ uv pip install --no-deps -e ." not in log2
    [reused] = [line for line in log2 if line.startswith("reusing the app's layer of d1")]
    assert second.venv == cache / "layers" / "d2"
    assert (script(first, "shop-version"), script(second, "shop-version")) == ("1", "2")  # each its own release
    r1 = str(tmp_path / "releases" / "r1")
    assert subprocess.run(["grep", "-rl", "--exclude-dir=__pycache__", r1, str(second.venv)],
                          capture_output=True).stdout == b""  # nothing in the new layer names the old release

    # A third release, reused from the second (relocated twice), still runs its own code.
    third, _ = run_build(release(tmp_path, "r3", {"pyproject.toml": pyproject, "shop.py": SHOP.format(v=3)}), cache, "d3")
    assert script(third, "shop-version") == "3"

    # A new file (its module could be a new top-level name): installed again.
    fourth, log4 = run_build(release(tmp_path, "r4", {"pyproject.toml": pyproject, "shop.py": SHOP.format(v=4),
                                                      "extra.py": ""}), cache, "d4")
    assert "$ uv pip install --no-deps -e ." in log4
    assert script(fourth, "shop-version") == "4"
    # Changed packaging (a new console script): installed again, and the new script exists.
    changed = pyproject.replace('shop-version = "shop:main"', 'shop-version = "shop:main"\nshop-again = "shop:main"')
    fifth, log5 = run_build(release(tmp_path, "r5", {"pyproject.toml": changed, "shop.py": SHOP.format(v=5)}), cache, "d5")
    assert "$ uv pip install --no-deps -e ." in log5
    assert script(fifth, "shop-again") == "5"


def test_dynamic_metadata_installs_the_app_every_build(tmp_path):
    cache = tmp_path / "cache"
    pyproject = PYPROJECT.format(token=tmp_path.name.replace("_", "-")[-20:]).replace(
        'version = "0.1"', 'dynamic = ["version"]') + '[tool.setuptools.dynamic]\nversion = {attr = "shop.VERSION"}\n'
    for n in (1, 2):
        result, log = run_build(release(tmp_path, f"r{n}", {"pyproject.toml": pyproject, "shop.py": SHOP.format(v=n)}),
                                cache, f"d{n}")
        assert "note: pyproject.toml: [project] dynamic = ['version']: the metadata may be computed, so the app is " \
               "installed every build" in log
        assert "$ uv pip install --no-deps -e ." in log
        version = subprocess.run([str(result.venv / "bin" / "python"), "-c",
                                  "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))",
                                  f"reuse-{tmp_path.name.replace('_', '-')[-20:]}"], capture_output=True, text=True)
        assert version.stdout.strip() == str(n)  # the metadata of this release, not the first one's


BACKEND = '''
"""A PEP 517 backend with no PEP 660 hook: it can build a wheel, not an editable one."""
import base64, hashlib, os, zipfile

NAME, VERSION = "nobackend_app", "0.1"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    info = f"{NAME}-{VERSION}.dist-info"
    files = {"legacy_app.py": open("legacy_app.py", "rb").read(),
             f"{info}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        for path, data in files.items():
            whl.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        whl.writestr(f"{info}/RECORD", "\\n".join(record) + "\\n")
    return name
'''


def test_a_backend_without_editable_support_gets_a_copy(tmp_path):
    pyproject = ('[project]\nname = "nobackend_app"\nversion = "0.1"\n'
                 '[build-system]\nrequires = []\nbuild-backend = "oldbackend"\nbackend-path = ["."]\n')
    src = release(tmp_path, "r1", {"pyproject.toml": pyproject, "oldbackend.py": BACKEND, "legacy_app.py": "V = 'copy'\n"})
    result, log = run_build(src, tmp_path / "cache", "d1")
    assert "$ uv pip install --no-deps -e ." in log
    assert ("note: the app's build backend cannot install it editable (no PEP 660 `build_editable`): installing a "
            "copy instead, every build") in log
    assert "$ uv pip install --no-deps ." in log
    done = subprocess.run([str(result.venv / "bin" / "python"), "-c", "import legacy_app; print(legacy_app.__file__, legacy_app.V)"],
                          capture_output=True, text=True, cwd="/")
    assert done.stdout.split()[1] == "copy" and "site-packages" in done.stdout  # a copy, not the release's file
