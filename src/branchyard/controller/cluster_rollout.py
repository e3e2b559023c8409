"""A deployment on a cluster backend (Kubernetes, issue 19): what replaces hooks-as-processes and replicas-as-processes
when the machine has an EnvironmentsPort. The build, the checks, the provisioning, the isolation guard and the
recorded snapshot are the same as on the local backend (attempt.py); then:

    the release archive   the release's source and virtualenv packed once (build/archive.py) next to its release
                          directory; a promotion or a rollback reuses it, never rebuilds
    prepare               namespace, bounds, Secrets (this deployment's variables snapshot, its fetch token), data
    backup                production's database, before its migrations (a dump job in the namespace: backups.py)
    hooks                 preDeployCommand, then seedCommand for a new database, as Jobs (not on a rollback/redeploy)
    roll out              the Deployments rolled (maxUnavailable 0, readiness probes) and routed; then the switch:
                          the same one transaction as on the local backend (current deployment, the old one REMOVED)

Pods fetch the archive from the control plane (`/internal/releases/<deployment>.tar.gz`) with a token made for that
deployment only (internal_auth.release_token).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import select

from .. import internal_auth, names
from ..backends.ports import DesiredEnvironment, EnvironmentSecrets, EnvironmentsPort, ReleaseArtifact
from ..build import archive, release
from ..errors import BadInput, BranchyardError
from ..settings import Settings
from ..spec import load_project
from ..spec.model import PostgresConfig, RedisConfig
from ..store import models as m
from ..store.db import Store
from .backups import Backups
from .dataplane import DataPlane
from .replicas import PORT_PLACEHOLDER
from .routes import Routes
from .snapshot import DeploymentConfig

log = logging.getLogger("branchyard.cluster")
RELEASES_PATH = "/internal/releases/{deployment}.tar.gz"
_PYTHON_TAG = re.compile(r"(?:^|/)python:(\d+\.\d+)")


def runtime_python(image: str, version: str) -> str:
    """The runtime image's interpreter the release's virtualenv is pointed at (the official python images':
    /usr/local/bin/pythonX.Y). BadInput when the image names another Python than the one the release was built with."""
    major_minor = ".".join(version.split(".")[:2])
    tag = _PYTHON_TAG.search(image)
    if tag and tag.group(1) != major_minor:
        raise BadInput(f"the release was built with Python {version}, but BRANCHYARD_KUBE_RUNTIME_IMAGE {image} runs "
                       f"Python {tag.group(1)}: set the image to python:{major_minor}-slim (or the app's Python to "
                       f"{tag.group(1)})")
    return f"/usr/local/bin/python{major_minor}"


class ClusterRollouts:
    def __init__(self, settings: Settings, store: Store, *, data: DataPlane, backups: Backups, routes: Routes,
                 environments: EnvironmentsPort, set_status: Callable[[str, str], None],
                 finish: Callable[[str, str], None], check_wanted: Callable[[str], None],
                 prune_releases: Callable[[int], None]) -> None:
        self.settings = settings
        self.store = store
        self.data = data
        self.backups = backups
        self.routes = routes
        self.environments = environments
        self.set_status = set_status
        self.finish = finish
        self.check_wanted = check_wanted
        self.prune_releases = prune_releases  # beyond BRANCHYARD_RELEASES_RETAINED: directories and archives

    def deploy(self, project: str, env_name: str, dep_id: str, out: Callable[[str], None], *, src: Path, venv: Path,
               build_meta: Mapping[str, object], new_database: bool, backup_first: bool) -> None:
        """After provisioning and the isolation guard: pack (or reuse) the archive, prepare, back the database up when
        `backup_first` (production's, before its migrations, as on the local backend), run the hooks, roll out."""
        self._pack(dep_id, src, venv, build_meta, out)
        desired = self.desired(project, env_name, dep_id, new_database=new_database)
        self.environments.prepare(desired, out)
        self.check_wanted(dep_id)
        if backup_first:
            backup = self.backups.create(project, env_name, kind="pre-deploy")
            out(f"-----> backup {backup['id']} taken before migrations ({backup['size']} bytes, sha256 "
                f"{backup['sha256'][:12]})")
        self.environments.run_hooks(desired, out)
        if new_database:
            self.data.mark_seeded(project, env_name)
        self.roll_out(project, env_name, dep_id, out, desired=desired)

    def roll_out(self, project: str, env_name: str, dep_id: str, out: Callable[[str], None], *,
                 desired: DesiredEnvironment | None = None) -> None:
        """Roll the deployment out and switch to it. Without `desired` (a redeploy, rollback, `up`, a variables
        change: a retained release and its snapshot), the namespace is prepared first and no hook runs."""
        if desired is None:
            self._pack_again(dep_id, out)
            desired = self.desired(project, env_name, dep_id, new_database=False)
            self.environments.prepare(desired, out)
        self.check_wanted(dep_id)
        self.set_status(dep_id, m.DEPLOYING)
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            keep = [env.current_deployment_id] if env.current_deployment_id else []
        self.environments.roll_out(desired, out, keep=keep)
        self.check_wanted(dep_id)
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            old_id = env.current_deployment_id if env.current_deployment_id != dep_id else None
            env.current_deployment_id, env.state = dep_id, m.ENV_ACTIVE
            env.slept_at = env.sleep_kind = None
            env_id = env.id
            if old_id:
                old = s.get(m.Deployment, old_id)
                if old.status in (m.SUCCESS, m.CRASHED, m.SLEEPING):
                    old.status = m.REMOVED
        self.routes.sync()
        self.prune_releases(env_id)
        url = self.settings.public_url(desired.hosts[0])
        out(f"-----> deployment SUCCESS: {url}")
        self.finish(dep_id, m.SUCCESS)
        with self.store.session() as s:
            self.store.record(s, project, "deploy.succeeded", f"{desired.release.commit[:12]} is live",
                              environment=env_name, deployment_id=dep_id)

    def rescale(self, project: str, env_name: str) -> None:
        """`scale`, `down`: the current deployment's workloads applied again with the environment's replica count now
        (0 when it is down), and awaited; no new deployment, no hook."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            current, asleep = env.current_deployment_id, env.state == m.ENV_SLEEPING
        if current is None:
            return
        desired = self.desired(project, env_name, current, new_database=False, asleep=asleep)
        self.environments.roll_out(desired, lambda line: log.info("%s/%s %s", project, env_name, line.strip()),
                                   keep=[current])

    def apply_data_services(self, project: str, env_name: str, out: Callable[[str], None]) -> bool:
        """`add --plugin` on a cluster: apply the namespace's objects for the current deployment now, the new
        service's StatefulSet among them, and wait until it is ready (as the local backend starts its server at once).
        False when the environment has no deployment yet: its first one will."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            dep_id = env.current_deployment_id
        if dep_id is None:
            return False
        self.environments.prepare(self.desired(project, env_name, dep_id, new_database=False), out)
        return True

    def desired(self, project: str, env_name: str, dep_id: str, *, new_database: bool,
                asleep: bool = False) -> DesiredEnvironment:
        """The deployment as the cluster should run it, from its recorded snapshot and its release's files (`asleep`:
        `down`, its workloads at zero; a deployment itself always wakes the environment, as on the local backend)."""
        with self.store.session() as s:
            dep = self.store.deployment(s, dep_id)
            env = s.get(m.Environment, dep.environment_id)
            p = s.get(m.Project, dep.project_id)
            if not dep.release_dir or dep.variables_json is None:
                raise BranchyardError(f"deployment {dep.id} has no retained release to run")
            release_dir, sha, branch = Path(dep.release_dir), dep.commit_sha, dep.branch
            snapshot = DeploymentConfig.from_json(dep.config_json) if dep.config_json else None
            variables = json.loads(self.data.box.decrypt(dep.variables_json))
            env_id = env.id
            pr = s.scalar(select(m.Preview.number).where(m.Preview.project_id == p.id, m.Preview.environment == env.name,
                                                         m.Preview.kind == "pr"))
            replicas = 0 if asleep else env.replicas_override
            workers_scale = json.loads(env.services_scale) if env.services_scale else {}
            host = self.routes.hostname(p, env)
            custom = list(s.scalars(select(m.Domain.host).where(m.Domain.environment_id == env.id).order_by(m.Domain.host)))
        config = load_project(release_dir).environment(env_name)
        if snapshot is not None:  # what the deploy recorded: an inferred start command included (not in the files)
            config = dataclasses.replace(config, web=snapshot.web, processes=snapshot.processes)
        if workers_scale:  # `scale worker=N`: the Procfile services' counts now, over the spec's
            config = dataclasses.replace(config, processes={
                name: dataclasses.replace(p, replicas=workers_scale.get(name, p.replicas))
                for name, p in config.processes.items()})
        added = self.data.service_names(env_id)  # what `add --plugin` provisioned besides the spec's services
        if config.postgres is None and "postgres" in added:
            config = dataclasses.replace(config, postgres=PostgresConfig(name=added["postgres"]))
        if config.redis is None and "redis" in added:
            config = dataclasses.replace(config, redis=RedisConfig(name=added["redis"]))
        services = self.data.service_variables(env_id)
        pg = services.get(config.postgres.name, {}) if config.postgres else {}
        redis = services.get(config.redis.name, {}) if config.redis else {}
        archive_file = archive.archive_path(release_dir)
        control = self.settings.kubernetes.pods_reach_control_plane_at(self.settings.control_url)
        port = str(self.environments.app_port)
        return DesiredEnvironment(
            project=project, config=config, hosts=(host, *custom),
            release=ReleaseArtifact(id=dep_id, commit=sha, branch=branch,
                                    archive_url=control + RELEASES_PATH.format(deployment=dep_id),
                                    archive_sha256=archive.recorded_sha256(archive_file)),
            variables={k: v.replace(PORT_PLACEHOLDER, port) for k, v in variables.items()},
            secrets=EnvironmentSecrets(
                postgres_password=pg.get("PGPASSWORD", ""), redis_password=redis.get("REDISPASSWORD", ""),
                release_token=internal_auth.release_token(self.settings.home, dep_id),
                backup_token=internal_auth.backup_token(self.settings.home, project, env_name),
                postgres_user=pg.get("PGUSER", names.database_name(project, env_name)),
                postgres_database=pg.get("PGDATABASE", names.database_name(project, env_name))),
            public_domain=host, pull_request=pr, replicas=replicas,
            external_postgres=self.settings.postgres_url is not None, new_database=new_database)

    # --- the archive --------------------------------------------------------------------------------

    def _pack(self, dep_id: str, src: Path, venv: Path, build_meta: Mapping[str, object],
              out: Callable[[str], None]) -> None:
        with self.store.session() as s:
            release_dir = Path(self.store.deployment(s, dep_id).release_dir or "")
        dest = archive.archive_path(release_dir)
        if dest.is_file() and archive.recorded_sha256(dest):
            out(f"-----> release archive {dest.name}: reused (built once)")
            return
        python = runtime_python(self.settings.kubernetes.runtime_image, str(build_meta.get("python_version") or ""))
        deps = Path(str(build_meta["dependencies"])) if build_meta.get("dependencies") else None
        packed = archive.pack(dest, src=src, venv=venv, dependencies=deps if deps != venv else None,
                              runtime_python=python)
        archive.record_sha256(dest, packed.sha256)
        out(f"-----> release archive {dest.name}: {packed.files} files, {packed.size / 1e6:.1f} MB, sha256 "
            f"{packed.sha256[:12]} (for {self.settings.kubernetes.runtime_image})")

    def _pack_again(self, dep_id: str, out: Callable[[str], None]) -> None:
        """A retained release deployed again: its archive, packed now if it was built before the cluster backend."""
        with self.store.session() as s:
            dep = self.store.deployment(s, dep_id)
            release_dir, config_json = Path(dep.release_dir or ""), dep.config_json
        if archive.recorded_sha256(archive.archive_path(release_dir)):
            return  # complete (an archive without its digest was cut off mid-pack: packed again)
        meta = release.read_release_meta(release_dir) or {}
        venv = Path(str(meta.get("venv", "")))
        if not meta.get("venv") or not (venv / "bin").is_dir():
            raise BranchyardError(f"deployment {dep_id}: no release archive and its virtualenv is gone; push again")
        root = json.loads(config_json or "{}").get("web", {}).get("root_dir") or "."
        src = release_dir if root in ("", ".") else names.safe_join(release_dir, root)
        self._pack(dep_id, src, venv, meta, out)
