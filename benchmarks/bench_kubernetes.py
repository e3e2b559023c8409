"""The Kubernetes backend's own costs (issue 19), each against a baseline in the same run:

1. `render` of one environment (the example app's production, staging, a preview): the project files read and the
   environment resolved, the manifests made, the YAML written — against the same files read and resolved alone
   (what `config show` does), so the ratio is the mapping's own cost.
2. The release archive (build/archive.py: relocation, deterministic members, gzip) of a real virtualenv (this
   project's own .venv, ~100 MB of packages) with the example app's source — against `tarfile` writing the same two
   trees gzip'd as they are (same level, __pycache__ left out as pack does; no rewriting, no sorting): the ratio is
   the packer's own cost; sizes too.
3. One deployment of the example's staging through ClusterEnvironments against the fake Kubernetes API
   (tests/fakes/kube_api.py, controllers played by the autopilot in a thread): the API requests it makes and their
   kinds — what a deploy asks of a cluster. Wall time there is the fake's and the polling's, not a cluster's: printed,
   not a goal.

Usage: .venv/bin/python benchmarks/bench_kubernetes.py [RUNS]   (default 30 renders; 3 packs)
"""

from __future__ import annotations

import collections
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from branchyard import settings as settings_module  # noqa: E402
from branchyard.backends.kubernetes import documents  # noqa: E402
from branchyard.backends.kubernetes.manifests import render_environment  # noqa: E402
from branchyard.backends.kubernetes.offline import inputs_from_files  # noqa: E402
from branchyard.build import archive  # noqa: E402
from branchyard.spec import load_project  # noqa: E402

EXAMPLE = ROOT / "examples" / "yoto-smart-stream"


def ms(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"


def bench_render(runs: int) -> None:
    settings = settings_module.load({"BRANCHYARD_HOME": "/nonexistent"})
    print("1. render one environment (files → manifests → YAML) vs the files read and resolved alone")
    for env in ("production", "staging", "pr-12"):
        rendered, baseline = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            load_project(EXAMPLE).environment(env)
            t1 = time.perf_counter()
            objects = render_environment(inputs_from_files(EXAMPLE, env, settings))
            text = documents.stream(objects)
            t2 = time.perf_counter()
            baseline.append(t1 - t0)
            rendered.append(t2 - t1)
        ratio = statistics.median(rendered) / statistics.median(baseline)
        print(f"   {env:<10} render {ms(rendered)}; resolve alone {ms(baseline)}; ratio {ratio:.1f}x "
              f"({len(objects)} objects, {len(text) / 1024:.0f} KiB of YAML)")


def bench_pack(runs: int) -> None:
    venv = ROOT / ".venv"
    print(f"2. release archive of {venv} + the example's source vs tarfile of the same trees as they are")
    packed_t, plain_t, digests = [], [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            dest = Path(tmp) / f"r{i}.tar.gz"
            t0 = time.perf_counter()
            try:
                packed = archive.pack(dest, src=EXAMPLE, venv=venv, dependencies=None,
                                      runtime_python=f"/usr/local/bin/python{sys.version_info[0]}.{sys.version_info[1]}")
            except archive.CannotPack as err:  # an editable install of branchyard itself names binary paths
                print(f"   (this venv cannot be packed exactly: {err}; nothing measured)")
                return
            t1 = time.perf_counter()
            digests.add(packed.sha256)
            plain = Path(tmp) / f"p{i}.tar.gz"
            skip = lambda info: None if "__pycache__" in info.name.split("/") else info  # noqa: E731 (as pack skips)
            with tarfile.open(plain, "w:gz", compresslevel=6) as tar:  # pack's gzip level (tarfile's default is 9)
                tar.add(EXAMPLE, arcname=".", filter=skip)
                tar.add(venv, arcname=".venv", filter=skip)
            t2 = time.perf_counter()
            packed_t.append(t1 - t0)
            plain_t.append(t2 - t1)
        print(f"   pack {statistics.median(packed_t):.2f} s (p50 of {runs}); plain tarfile {statistics.median(plain_t):.2f} s;"
              f" ratio {statistics.median(packed_t) / statistics.median(plain_t):.2f}x")
        print(f"   {packed.files} files, {packed.rewritten} rewritten, {packed.size / 1e6:.1f} MB "
              f"(plain {plain.stat().st_size / 1e6:.1f} MB); {len(digests)} distinct sha256 over {runs} packs "
              f"(deterministic: 1)")


def bench_deploy() -> None:
    import dataclasses

    from fakes.kube_api import FakeKube
    from fakes.kube_autopilot import Autopilot

    from branchyard.backends.kubernetes.cluster import Cluster
    from branchyard.backends.kubernetes.environments import ClusterEnvironments
    from branchyard.backends.ports import DesiredEnvironment, EnvironmentSecrets, ReleaseArtifact

    print("3. one deployment of the example's staging through ClusterEnvironments against the fake API")
    settings = settings_module.load({"BRANCHYARD_HOME": "/nonexistent"})
    base = inputs_from_files(EXAMPLE, "staging", settings)
    desired = DesiredEnvironment(
        project=base.project, config=base.config, hosts=base.hosts,
        release=ReleaseArtifact(id="d1", commit="c" * 40, branch="develop", archive_url="http://cp/r", archive_sha256="e" * 64),
        variables=dict(base.variables), public_domain=base.public_domain, new_database=True,
        secrets=EnvironmentSecrets(postgres_password="p" * 24, redis_password="r" * 24, release_token="t", backup_token="b"))
    with FakeKube() as fake, Autopilot(fake).in_thread(interval=0.01), tempfile.TemporaryDirectory() as tmp:
        envs = ClusterEnvironments(Cluster.connect(fake.kubeconfig(Path(tmp) / "kubeconfig")), settings.kubernetes, "http://cp", poll=0.05)
        phases = {}
        for phase in ("prepare", "run_hooks", "roll_out"):
            before = len(fake.requests())
            t0 = time.perf_counter()
            getattr(envs, phase)(desired, lambda line: None)
            phases[phase] = (len(fake.requests()) - before, time.perf_counter() - t0)
        again = len(fake.requests())
        envs.roll_out(dataclasses.replace(desired, release=dataclasses.replace(desired.release, id="d2")), lambda _: None)
        kinds = collections.Counter(r.method for r in fake.requests())
        for phase, (n, seconds) in phases.items():
            print(f"   {phase:<10} {n:>3} API requests, {seconds * 1000:.0f} ms (fake API, 50 ms polls)")
        print(f"   a redeploy's roll-out (a new release's workloads): {len(fake.requests()) - again} requests")
        print(f"   by method over both: {dict(kinds)}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    bench_render(runs)
    bench_pack(2)
    bench_deploy()


if __name__ == "__main__":
    main()
