"""The house rules that keep it livable, enforced: pure modules stay pure; the controller reaches the machine
only through backends/ports.py. Read from the source with `ast`, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "branchyard"

# Pure: decisions from values, no I/O, no state. They may import each other, errors, and the standard library.
PURE = ["plan.py", "deploy_plan.py", "policy.py", "promotion.py", "names.py", "domains.py", "access.py", "branch_follow.py",
        "git_rules.py", "metrics.py", "monitoring.py", "spec", "alerting.py", "availability.py", "verification.py", "logrecords.py",
        "isolation.py", "variables.py",
        "release_variables.py", "kube_settings.py", "cron_plan.py", "watch_patterns.py", "promotion_text.py", "dashboard/views.py",
        "dashboard/session.py"]
IMPURE_PACKAGES = ("branchyard.controller", "branchyard.store", "branchyard.backends", "branchyard.api",
                   "branchyard.cli", "branchyard.server", "branchyard.build", "branchyard.github", "branchyard.triggers")

def _modules(entry: str) -> list[Path]:
    path = SRC / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _imports(path: Path) -> set[str]:
    """Absolute names of the branchyard modules `path` imports (relative imports resolved)."""
    package = ["branchyard", *path.relative_to(SRC).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("branchyard")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("branchyard"):
                found.add(module)
                where = SRC.parent / module.replace(".", "/")
                found |= {f"{module}.{a.name}" for a in node.names  # `from .. import plan`: a module, not a name
                          if (where / a.name).with_suffix(".py").exists() or (where / a.name).is_dir()}
    return found


@pytest.mark.parametrize("path", [p for entry in PURE for p in _modules(entry)], ids=lambda p: str(p.relative_to(SRC)))
def test_pure_modules_import_no_controller_store_backend_api_or_cli(path):
    bad = sorted(i for i in _imports(path) if i.startswith(IMPURE_PACKAGES))
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_the_dashboard_reaches_the_controller_only_through_the_api():
    # issue 18: every page is a client of the API (in-process, the user's token); nothing only the browser can do
    direct = {(path.name, name) for path in sorted((SRC / "dashboard").glob("*.py")) for name in _imports(path)
              if name.startswith(("branchyard.controller", "branchyard.store", "branchyard.backends", "branchyard.cli",
                                  "branchyard.api.routes"))}
    assert direct == set(), "the dashboard calls the API's routes over ASGI (dashboard/api_client.py), nothing else"


def test_the_controller_reaches_backends_only_through_the_ports():
    direct = set()
    for path in sorted((SRC / "controller").glob("*.py")):
        for name in _imports(path):
            if name.startswith("branchyard.backends") and name != "branchyard.backends.ports":
                direct.add((path.name, name))
    assert direct == set(), "direct backend imports in the controller: go through backends/ports.py"


def test_the_import_reader_sees_relative_and_lazy_imports(tmp_path):
    """The reader itself: a test that could not fail would prove nothing."""
    module = SRC / "controller" / "deployer.py"
    names = _imports(module)
    assert {"branchyard.deploy_plan", "branchyard.backends.ports", "branchyard.controller.guards"} <= names
    assert "branchyard.backends.kubernetes.machine" in _imports(SRC / "server.py")  # a lazy import


# issue 19: spec → manifests is pure (table-tested, and `render` needs no cluster); only cluster.py talks to one
KUBE_MAPPING = ["naming", "inputs", "quantities", "security", "workloads", "data_services", "network", "sizing",
                "manifests", "offline", "documents", "data_jobs"]


@pytest.mark.parametrize("module", KUBE_MAPPING)
def test_the_kubernetes_mapping_is_pure(module):
    path = SRC / "backends" / "kubernetes" / f"{module}.py"
    allowed = {"branchyard.backends.kubernetes", "branchyard.backends.ports"} | {
        f"branchyard.backends.kubernetes.{m}" for m in KUBE_MAPPING}
    bad = sorted(i for i in _imports(path) if i.startswith(IMPURE_PACKAGES) and i not in allowed)
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"
    tree = ast.parse(path.read_text())
    third = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    third |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
    assert not third & {"lightkube", "httpx", "httpx2", "subprocess", "socket", "sqlalchemy"}, third
