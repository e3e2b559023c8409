"""The web dashboard's board page (issue 18), server side: `GET /` for one project with 3 persistent environments
(production, staging, qa) and 50 pull-request previews. Goal: p95 ≤ 100 ms on this machine.

"Server side" is the time of one request through the control plane's ASGI app in process — the app that
`api.app.create_app(controller)` returns, driven by httpx's ASGITransport with the dashboard's session cookie — from
the request to the last byte of the rendered HTML: no socket, no uvicorn, no browser. The page itself calls the API in
process (GET /api/whoami, /api/projects, then /api/projects/{p}/environments and /cost), then renders board.html.
Requests are sequential (one browser).

Baseline, in the same run and interleaved with the board's requests: the JSON API calls the board needs for the
project (GET /api/projects/{p}/environments and GET /api/projects/{p}/cost, concurrently as the page makes them,
with the session's token), so the ratio (and the median of the paired differences) is the dashboard's own cost:
whoami, projects, the view models and the template. Each API call alone is timed too (which one dominates), and one
environment's page (GET /projects/{p}/environments/production: seven API calls) for information.

The state is the product's own, without deploying anything: a real Controller (composed as `server.run` composes
it, on the local machine's backends, but not started: no reconciler, router, PostgreSQL or background threads, so
nothing competes with the requests as it would in a running control plane) over a real Store in a temporary
BRANCHYARD_HOME. The project comes from `POST /api/projects` as `branchyard init` sends it (the example app's
branchyard.toml plus a persistent `qa` environment), variables from `POST …/variables` (skip deploys), each preview
from a `previews` row as a pull_request delivery records it (kind "pr", number, head branch, author; admitted) and
the previews loop's own `_create_environment` (ephemeral, staging's variables copied). Each environment has
deployments recorded like the deployer's: a history (12 REMOVED per persistent environment, 1–3 per preview, their
replicas left as STOPPED rows as the replica stopper leaves them) and a current SUCCESS one with the config snapshot
`spec.environment(name).to_dict()`. A current deployment's replicas are real processes (`exec sleep`, started by
`processes.spawn` as apps are: a process group each, not listening): production 2 web replicas, the others 1, all
RUNNING with a passed liveness check recorded, so the API reads /proc for each as for live apps. Production has 30
days of uptime checks every 30 s (86,400 rows: the summary is cached 30 s, so one board request every 30 s pays
for the scan — the `max` figure); every replica has an hour of memory/CPU samples and each database its size (the
metrics sampler's series); the cost usage rows are advanced once (housekeeping's `costs.tick`).

Usage: .venv/bin/python benchmarks/bench_dashboard.py [REQUESTS]   (default 300; BENCH_KEEP=1 keeps the home)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from harness import EXAMPLE
from sqlalchemy import select

from branchyard import monitoring as mon
from branchyard import settings as settings_mod
from branchyard.api.app import create_app
from branchyard.backends.local import processes
from branchyard.backends.local.machine import local_machine
from branchyard.controller.core import Controller
from branchyard.controller.metrics import Point
from branchyard.controller.projects import remember_spec
from branchyard.dashboard.session import SESSION_COOKIE
from branchyard.spec import load_project
from branchyard.spec.model import PR_TEMPLATE
from branchyard.store import models as m
from branchyard.store.db import Store

PROJECT = "yoto"
PREVIEWS = 50
GOAL_P95_MS = 100.0
BASE_URL = "http://branchyard.test"  # never resolved: ASGITransport hands the request to the app
QA = '\n[environments.qa]\nbranch = "release"\n'  # a third persistent environment (the example declares two)


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (statistics' exclusive method) in milliseconds."""
    return statistics.quantiles(values, n=100)[q - 1] * 1e3


def build_state(tmp: Path) -> tuple[Controller, Store, str]:
    """A controller composed as `server.run` composes it (not started) over a new home; the machine's admin token."""
    app_dir = tmp / "app"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (app_dir / "branchyard.toml").write_text((app_dir / "branchyard.toml").read_text() + QA)
    settings = settings_mod.load({"BRANCHYARD_HOME": str(tmp / "home"), "BRANCHYARD_DOMAIN": "localhost",
                                  "PATH": os.environ["PATH"]})
    settings.home.mkdir(parents=True)
    store = Store(settings.state_db)
    controller = Controller(settings, store, local_machine(settings))
    token = "bench-admin-token-" + "x" * 24
    controller.users.bootstrap(token)
    return controller, store, token


async def record_project(client: httpx.AsyncClient, token: str, controller: Controller, tmp: Path,
                         handles: list[processes.ProcessHandle]) -> int:
    """`init` and `variables set` through the API, then deployments, replicas, previews, samples; environments made."""
    auth = {"authorization": f"Bearer {token}"}
    spec = load_project(tmp / "app")
    declared = [{"name": d.name, "branch": d.branch, "production": d.production, "protected": d.protected}
                for d in spec.environments.values() if d.name != PR_TEMPLATE and not d.ephemeral]
    r = await client.post("/api/projects", headers=auth, json={"name": PROJECT, "upstream": None,
                                                             "github_repository": spec.github_repository,
                                                             "environments": declared})
    assert r.status_code == 200, r.text
    store, settings = controller.store, controller.settings
    remember_spec(store, PROJECT, spec)  # what a deploy of a persistent environment keeps (the preview policy)
    for env_name in ("production", "staging", "qa"):
        for secret, values in ((True, {"YOTO_CLIENT_ID": f"id-{env_name}", "YOTO_CLIENT_SECRET": f"s-{env_name}",
                                       "SENTRY_DSN": f"https://{env_name}@sentry.example.invalid/1"}),
                               (False, {"FEATURE_FLAGS": "search,streams", "MAX_UPLOAD_MB": "20"})):
            r = await client.post(f"/api/projects/{PROJECT}/environments/{env_name}/variables", headers=auth,
                                  json={"variables": values, "secret": secret, "skip_deploys": True})
            assert r.status_code == 200, r.text

    now = m.utcnow()
    day = 86400.0
    base_sha = "b" * 40
    with store.session() as s:
        p = store.project(s, PROJECT)
        for i in range(PREVIEWS):
            number = 101 + i
            s.add(m.Preview(project_id=p.id, environment=f"pr-{number}", kind="pr", number=number,
                            branch=f"feature/change-{number}", head_sha=f"{number:040x}", base_sha=base_sha,
                            head_repo=spec.github_repository, fork=False, bot=False, draft=False,
                            author=f"dev{i % 7}", open=True, decision=m.PREVIEW_DEPLOY,
                            last_activity_at=now - dt.timedelta(seconds=i * 3600 * 2)))
    for i in range(PREVIEWS):  # the previews loop's own step: ephemeral, staging's variables copied
        controller.previews._create_environment(PROJECT, f"pr-{101 + i}", f"feature/change-{101 + i}", fork=False,
                                                policy=spec.preview)

    logs = settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    points: list[Point] = []
    t_now = time.time()
    with store.session() as s:
        p = store.project(s, PROJECT)
        envs = list(s.scalars(select(m.Environment).where(m.Environment.project_id == p.id).order_by(m.Environment.id)))
        for k, env in enumerate(envs):
            config = spec.environment(env.name).to_dict()
            web_replicas = int(config["web"].get("replicas", 1))
            history = 12 if not env.ephemeral else 1 + k % 3
            trigger = "webhook" if env.ephemeral else "push"
            current = None
            for h in range(history + 1):
                created = now - dt.timedelta(seconds=(history - h) * day / 2 + 600)
                last = h == history
                d = m.Deployment(project_id=p.id, environment_id=env.id, status=m.SUCCESS if last else m.REMOVED,
                                 commit_sha=f"{k:08x}{h:032x}", branch=env.branch, trigger=trigger,
                                 actor="github" if env.ephemeral else "admin", work=m.WORK_BUILD, attempts=1,
                                 release_dir=str(settings.releases_dir / PROJECT / f"{k}-{h}"),
                                 log_path=str(logs / f"deploy-{k}-{h}.log"),
                                 config_json=json.dumps(config), created_at=created,
                                 finished_at=created + dt.timedelta(seconds=95))
                s.add(d)
                s.flush()
                store.record(s, PROJECT, "deploy.succeeded", f"{env.name} is live ({d.commit_sha[:12]})",
                             environment=env.name, deployment_id=d.id)
                if not last:  # a replaced deployment's replicas stay as STOPPED rows (controller/replicas.py)
                    for slot in range(web_replicas):
                        s.add(m.Replica(deployment_id=d.id, environment_id=env.id, slot=slot, service="web",
                                        pid=900_000 + h * 10 + slot, start_time=1, port=20000 + h * 10 + slot,
                                        log_path=str(logs / f"{env.name}.web.{slot}.log"), state=m.REPLICA_STOPPED,
                                        started_at=created, last_exit="exited 0 (stopped)"))
                current = d
            env.current_deployment_id = env.target_deployment_id = current.id
            for slot in range(web_replicas):
                log_path = logs / f"{env.name}.web.{slot}.log"
                handle = processes.spawn("exec sleep 3600", cwd=settings.home, env={"PATH": os.environ["PATH"]},
                                         log_path=log_path, port=processes.free_port())
                handles.append(handle)
                s.add(m.Replica(deployment_id=current.id, environment_id=env.id, slot=slot, service="web",
                                pid=handle.pid, start_time=handle.start_time, port=handle.port,
                                log_path=str(log_path), state=m.REPLICA_RUNNING, started_at=current.finished_at,
                                health_failures=0, health_checked_at=t_now - 3))
                for j in range(360):  # an hour of the sampler's 10 s points
                    ts = int(t_now) // 10 * 10 - j * 10
                    replica = f"{env.name}.web.{slot}"
                    points.append(Point(PROJECT, env.name, mon.REPLICA_MEMORY_BYTES, "web", replica, ts,
                                        180e6 + (j % 17) * 1e6))
                    points.append(Point(PROJECT, env.name, mon.REPLICA_CPU_PERCENT, "web", replica, ts, 3.0 + j % 5))
            points.append(Point(PROJECT, env.name, mon.POSTGRES_DATABASE_BYTES, "", "", int(t_now) // 10 * 10,
                                40e6 + k * 1e5))
        production = next(e for e in envs if e.production)
        prod_id = production.id
    # 30 days of uptime checks of production's public URL, every 30 s (what controller/uptime.py keeps)
    checks = [{"environment_id": prod_id, "at": t_now - i * 30.0, "ok": i % 997 != 0, "status": 200 if i % 997 else 502,
               "error": None if i % 997 else "HTTP 502 from yoto.localhost/health", "duration_ms": 4.0}
              for i in range(30 * 2880)]
    with store.engine.begin() as connection:
        connection.execute(m.UptimeCheck.__table__.insert(), checks)
    controller.metrics.record(points)
    controller.costs.tick()  # housekeeping: every environment's usage row, advanced to now
    return len(envs)


async def sign_in(client: httpx.AsyncClient, token: str) -> tuple[str, str]:
    """The browser's sign-in: GET /login (nonce cookie, CSRF field), POST /login → the session cookie."""
    r = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
    r = await client.post("/login", data={"csrf": csrf, "token": token, "next": "/"})
    assert r.status_code == 303, (r.status_code, r.text[:300])
    cookie = r.cookies.get(SESSION_COOKIE) or client.cookies.get(SESSION_COOKIE)
    assert cookie, "no session cookie"
    return cookie, cookie.split(".", 1)[1]  # the cookie, and the session's API token


async def timed(fn) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def measure(app, admin_token: str, controller: Controller, tmp: Path, handles, n: int) -> None:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, follow_redirects=False) as client:
        envs = await record_project(client, admin_token, controller, tmp, handles)
        cookie, session_token = await sign_in(client, admin_token)
        client.cookies.clear()
        cookies = {SESSION_COOKIE: cookie}
        auth = {"authorization": f"Bearer {session_token}"}
        p = PROJECT

        async def get(path: str, **kw) -> httpx.Response:
            r = await client.get(path, **kw)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
            return r

        async def board() -> None:
            await get("/", cookies=cookies)

        async def api_pair() -> None:
            await asyncio.gather(get(f"/api/projects/{p}/environments", headers=auth),
                                 get(f"/api/projects/{p}/cost", headers=auth))

        calls = {name: (lambda path=path: get(path, headers=auth)) for name, path in (
            ("GET /api/whoami", "/api/whoami"), ("GET /api/projects", "/api/projects"),
            (f"GET /api/projects/{p}/environments", f"/api/projects/{p}/environments"),
            (f"GET /api/projects/{p}/cost", f"/api/projects/{p}/cost"))}

        async def env_page() -> None:
            await get(f"/projects/{p}/environments/production", cookies=cookies)

        page = (await get("/", cookies=cookies)).text
        cards = page.count('<li class="card ')
        assert cards == envs, f"the board shows {cards} cards for {envs} environments"
        for _ in range(20):  # warm up: templates compiled, caches filled
            await board()
            await api_pair()
            await env_page()

        boards, pairs = [], []
        for _ in range(n):  # interleaved: a busy moment of the machine slows both alike
            boards.append(await timed(board))
            pairs.append(await timed(api_pair))
        alone = {name: [await timed(call) for _ in range(max(50, n // 4))] for name, call in calls.items()}
        env_pages = [await timed(env_page) for _ in range(max(50, n // 4))]

    persistent = envs - PREVIEWS
    b50, b95, bmax = pct(boards, 50), pct(boards, 95), max(boards) * 1e3
    a50, a95 = pct(pairs, 50), pct(pairs, 95)
    print(f"environments: {envs} ({persistent} persistent, {PREVIEWS} previews); board page {len(page) / 1024:.0f} KiB "
          f"of HTML, {cards} cards; {n} requests each, sequential, in process (ASGI, no socket); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"board GET /:                                  p50 {b50:6.1f} ms  p95 {b95:6.1f} ms  max {bmax:6.1f} ms")
    print(f"baseline, API only (environments + cost):     p50 {a50:6.1f} ms  p95 {a95:6.1f} ms")
    own = statistics.median(b - a for b, a in zip(boards, pairs, strict=True)) * 1e3  # paired: the same moment
    print(f"ratio board / API only:                       p50 {b50 / a50:.2f}×  p95 {b95 / a95:.2f}×  "
          f"(the dashboard's own work, median of paired differences: {own:+.1f} ms)")
    for name, values in alone.items():
        print(f"  alone {name:<38} p50 {pct(values, 50):6.1f} ms  p95 {pct(values, 95):6.1f} ms")
    print(f"environment page GET /projects/{p}/environments/production (info): "
          f"p50 {pct(env_pages, 50):.1f} ms  p95 {pct(env_pages, 95):.1f} ms")
    verdict = "met" if b95 <= GOAL_P95_MS else "NOT met"
    print(f"goal: board p95 ≤ {GOAL_P95_MS:.0f} ms: {verdict} ({b95:.1f} ms)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    tmp = Path(tempfile.mkdtemp(prefix="by-bench-dashboard-"))
    handles: list[processes.ProcessHandle] = []
    controller = store = None
    try:
        controller, store, token = build_state(tmp)
        app = create_app(controller)
        asyncio.run(measure(app, token, controller, tmp, handles, n))
    finally:
        for h in handles:
            try:
                processes.stop(h, grace=1)
            except Exception as err:  # the others are stopped all the same
                print(f"replica process {h.pid} not stopped: {err}", file=sys.stderr)
        if controller is not None:
            controller.shutdown(wait=1)
        if store is not None:
            store.close()
        if os.environ.get("BENCH_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
