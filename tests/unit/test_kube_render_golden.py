"""`branchyard render` for the example app's production, staging and a preview: the exact output (golden files), and
every manifest valid against Kubernetes' own OpenAPI schemas of two supported versions (kubernetes-validate, strict:
an unknown field is an error too).

After an intended change: BRANCHYARD_UPDATE_GOLDEN=1 pytest tests/unit/test_kube_render_golden.py, then read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from branchyard.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "yoto-smart-stream"
GOLDEN = ROOT / "tests" / "golden" / "kubernetes"
VERSIONS = ("1.30.0", "1.34.0")  # the oldest Kubernetes the manifests need (preStop sleep, CronJob timeZone) and a newer one
ENVIRONMENTS = ("production", "staging", "pr-12")


def render(environment: str, *extra: str, env: dict[str, str] | None = None) -> str:
    clean = {k: "" for k in os.environ if k.startswith("BRANCHYARD_")}  # the operator defaults, whatever the shell has
    result = CliRunner().invoke(cli, ["render", "-e", environment, "--path", str(EXAMPLE), *extra],
                                env=clean | (env or {}), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_render_matches_the_golden_file(environment):
    out = render(environment)
    golden = GOLDEN / f"yoto-{environment}.yaml"
    if os.environ.get("BRANCHYARD_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(out)
    assert out == golden.read_text(), f"render -e {environment} differs from {golden.relative_to(ROOT)}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_manifest_is_valid_for_kubernetes(environment, version):
    docs = list(yaml.safe_load_all(render(environment, env={"BRANCHYARD_KUBE_CLUSTER_ISSUER": "letsencrypt",
                                                             "BRANCHYARD_KUBE_INGRESS_CLASS": "nginx"})))
    assert len(docs) > 10
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises naming the field


def test_the_validator_refuses_what_kubernetes_would():
    """The check above could not fail if the validator accepted anything."""
    doc = next(yaml.safe_load_all(render("production").split("---\n", 1)[1]))
    doc["metadata"]["lables"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[0], strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_control_planes_own_manifests_are_valid(version):
    """deploy/kubernetes/: the control plane inside the cluster (docs/kubernetes.md)."""
    docs = [d for f in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in yaml.safe_load_all(f.read_text())]
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "PersistentVolumeClaim", "Deployment", "Service", "Ingress"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
