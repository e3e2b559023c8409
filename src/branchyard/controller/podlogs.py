"""On a cluster backend (issue 19), what an environment's pods write joins its logs: a thread asks the cluster every
few seconds for the lines written since it last asked and appends them to the raw files the log shipper reads
(logship.py: `<deployment>/<service>.<N>.log`), so `logs -e ENV [-f]`, its filters, the dashboard's live logs and the
records' retention work as on the local backend.

Each pod of a deployment gets a slot of its service (`web.0`, `web.1` …, in the order they are first seen; a
replacement pod a new slot), kept in `<deployment>/pods.json` with the newest timestamp shipped for it: a line is
appended once. The cluster keeps stdout and stderr together: every line is the stdout stream. The data services'
pods (PostgreSQL, Redis) belong to no deployment: their lines go to the current deployment's directory as
`postgres.0`, `redis.0`. What the pods wrote while the control plane was down is fetched when it returns, up to an
hour back (SINCE_MAX); older lines are the cluster's only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from .. import names
from ..backends.ports import EnvironmentsPort, PodLogLine
from ..errors import BranchyardError
from ..store import models as m
from ..store.db import Store

log = logging.getLogger("branchyard.podlogs")
INTERVAL = 2.0  # seconds between two pulls
SINCE_MIN, SINCE_MAX = 10, 3600  # seconds of the window asked for (a margin over the interval; downtime's cap)
STATE = "pods.json"


class PodLogs:
    def __init__(self, store: Store, logs_dir: Path, environments: EnvironmentsPort, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.logs_dir = logs_dir
        self.environments = environments
        self.clock = clock
        self._last_pull: dict[tuple[str, str], float] = {}

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(INTERVAL):
            try:
                self.pull_once()
            except Exception:  # keep the thread alive; the next pull asks again
                log.exception("pulling pod logs failed")

    def pull_once(self) -> int:
        """One pull for every environment with a current deployment; how many lines were appended."""
        with self.store.session() as s:
            rows = s.execute(select(m.Project.name, m.Environment.name, m.Environment.current_deployment_id)
                             .join(m.Environment).where(m.Environment.current_deployment_id.is_not(None))).all()
        appended = 0
        for project, env_name, current in rows:
            try:
                appended += self.pull_env(project, env_name, current)
            except BranchyardError as err:
                log.warning("logs of %s/%s: %s", project, env_name, err)
        return appended

    def pull_env(self, project: str, env_name: str, current: str) -> int:
        now = self.clock()
        last = self._last_pull.get((project, env_name))
        since = SINCE_MAX if last is None else int(min(SINCE_MAX, max(SINCE_MIN, now - last + SINCE_MIN)))
        lines = self.environments.pod_logs(project, env_name, since_seconds=since)
        self._last_pull[(project, env_name)] = now
        by_dir: dict[Path, list[PodLogLine]] = {}
        for line in lines:  # a pod's release label is its deployment's id: the name of its log directory
            directory = names.safe_join(self.logs_dir, project, env_name, line.release or current)
            by_dir.setdefault(directory, []).append(line)
        return sum(_append(directory, batch) for directory, batch in by_dir.items())


def _append(directory: Path, lines: list[PodLogLine]) -> int:
    """Append the lines newer than each pod's last shipped timestamp to its slot's raw file; the state saved after."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    pods: dict[str, dict] = state.setdefault("pods", {})
    written = 0
    out: dict[str, list[str]] = {}
    for line in sorted(lines, key=lambda entry: entry.time):
        # a Procfile service's pods are labelled worker-<type>: its records say <type>, as on the local backend
        service = line.service.removeprefix("worker-") or "pod"
        known = pods.get(line.pod)
        if known is None:
            slot = sum(1 for p in pods.values() if p["service"] == service)
            known = pods[line.pod] = {"service": service, "slot": slot, "last": ""}
        if line.time <= known["last"]:
            continue
        known["last"] = line.time
        out.setdefault(f"{service}.{known['slot']}.log", []).append(line.text)
    for name, texts in out.items():
        with (directory / name).open("a", encoding="utf-8") as f:
            f.write("".join(text.rstrip("\n") + "\n" for text in texts))
        written += len(texts)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
    return written
