"""GitHub feedback stays off the deploy path: the cost of recording an audit event with the feedback listener
attached vs without it (same run), and the delay from the event to the commit status arriving at a local fake
GitHub API (the worker thread: resolve the facts in the store, then one HTTP request per GitHub call).

    .venv/bin/python benchmarks/bench_github_feedback.py [--events 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes.github_api import FakeGitHub  # noqa: E402

from branchyard.github.client import GitHubClient  # noqa: E402
from branchyard.github.feedback import Feedback, Resolver  # noqa: E402
from branchyard.settings import load  # noqa: E402
from branchyard.store import models as m  # noqa: E402
from branchyard.store.db import Store  # noqa: E402

TOKEN = "bench-token"
REPO = "owner/yoto-smart-stream"


def setup(root: Path) -> tuple[Store, object, list[str]]:
    settings = load({"BRANCHYARD_HOME": str(root / "home")})
    store = Store(settings.state_db)
    release = root / "release"
    release.mkdir()
    (release / "branchyard.toml").write_text(f'[project]\nname = "yoto"\n[github]\nrepository = "{REPO}"\n')
    with store.session() as s:
        p = m.Project(name="yoto", repo_path="/x")
        s.add(p)
        s.flush()
        e = m.Environment(project_id=p.id, name="staging")
        s.add(e)
        s.flush()
        d = m.Deployment(project_id=p.id, environment_id=e.id, commit_sha="a" * 40, trigger="push", status=m.SUCCESS,
                         release_dir=str(release))
        s.add(d)
        s.flush()
        dep_id = d.id
    return store, settings, [dep_id]


def record_times(store: Store, dep_id: str, n: int, kind: str) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        with store.session() as s:
            store.record(s, "yoto", kind, "x", environment="staging", deployment_id=dep_id)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    n = parser.parse_args().events
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub(token=TOKEN) as fake:
        store, settings, (dep_id,) = setup(Path(tmp))
        bare = record_times(store, dep_id, n, "variables.set")  # baseline: no listener
        fb = Feedback(store, GitHubClient(TOKEN, base_url=fake.url), Resolver(store, settings))
        store.listeners.append(fb.notify)
        fb.start()
        with_listener = record_times(store, dep_id, n, "deploy.succeeded")
        started = time.perf_counter()
        fb.wait_idle(300)
        drained = time.perf_counter() - started
        latencies = []
        for _ in range(20):  # one event at a time: event → status received
            before = len(fake.statuses_for(REPO, "a" * 40))
            t0 = time.perf_counter()
            with store.session() as s:
                store.record(s, "yoto", "deploy.succeeded", "x", environment="staging", deployment_id=dep_id)
            while len(fake.statuses_for(REPO, "a" * 40)) == before:
                time.sleep(0.001)
            latencies.append(time.perf_counter() - t0)
        fb.stop()
        store.close()
    b, w = statistics.median(bare), statistics.median(with_listener)
    print(f"record+commit, median of {n}: without listener {b * 1000:.2f} ms, with GitHub feedback {w * 1000:.2f} ms "
          f"(ratio {w / b:.2f})")
    print(f"backlog of {n} events (2 GitHub requests each) drained {drained:.2f} s after the last was recorded")
    print(f"event → commit status at the fake GitHub: median {statistics.median(latencies) * 1000:.1f} ms, "
          f"max {max(latencies) * 1000:.1f} ms (20 single events)")


if __name__ == "__main__":
    main()
