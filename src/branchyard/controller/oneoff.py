"""`branchyard run -e ENV -- CMD`: where a one-off command runs — the environment's current release (its code as
the working directory, its virtualenv first on PATH) with its resolved variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import names
from ..build import release
from ..errors import NotFound
from ..store.db import Store
from .env_vars import EnvVariables
from .replicas import PORT_PLACEHOLDER
from .snapshot import web_of


class OneOffs:
    def __init__(self, store: Store, *, variables: EnvVariables) -> None:
        self.store = store
        self.variables = variables

    def context(self, project: str, env_name: str) -> dict[str, Any]:
        """{cwd, venv, variables (revealed, without PORT)} for a command run in env_name's current release.

        NotFound, naming the push that makes one, while the environment has no deployment with a retained release."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            current = self.store.current_deployment(s, env)
            branch, dep_id = env.branch, current.id if current is not None else None
            release_dir = Path(current.release_dir) if current is not None and current.release_dir else None
            web = web_of(current.config_json) if current is not None else None
        meta = release.read_release_meta(release_dir) if release_dir is not None else None
        venv = Path(str(meta.get("venv"))) if meta and meta.get("venv") else None
        if meta is None or web is None or venv is None or not (venv / "bin").is_dir():
            push = f"`git push branchyard {branch}`" if branch else f"`branchyard up -e {env_name}`"
            raise NotFound(f"run: environment {env_name!r} has no deployment yet; commands run in its current release "
                           f"(deploy one first: {push})")
        assert release_dir is not None
        root = web.root_dir or "."
        cwd = release_dir if root in ("", ".") else names.safe_join(release_dir, root)
        values = self.variables.effective(project, env_name, reveal=True)["variables"]
        return {"cwd": str(cwd), "venv": str(venv), "deployment_id": dep_id,
                "variables": {k: v for k, v in values.items() if PORT_PLACEHOLDER not in v}}
