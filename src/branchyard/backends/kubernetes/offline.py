"""`branchyard render`'s inputs, from the project's files alone: no cluster, no control plane. Pure (it reads the
files it is given, nothing else).

The objects are the ones the backend applies, from the same `render_environment`. Where only the control plane
knows a value it is a visible placeholder, `<set at apply: …>`: secret values (`${{ secrets.X }}`), the data
services' passwords and tokens (so no secret is ever printed: they exist only in the control plane's state and the
cluster's Secrets), variables set with `variables set` (not in the files), the release's commit and archive. The
release is `next`: the deployment the next deploy creates, with its seed Job as a first deploy runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ... import names
from ...errors import BadInput
from ...settings import Settings
from ...spec import load_project
from ...spec.model import EnvironmentConfig
from ...variables import environment_variables, resolve
from . import data_services, naming
from .inputs import APP_PORT, Credentials, EnvironmentInputs, Release, service_host

NEXT_RELEASE = "next"
_MARK = re.compile("\x00([^\x00]*)\x00")


def placeholder(what: str) -> str:
    return f"<set at apply: {what}>"


def _mark(what: str) -> str:
    """A value only the control plane knows, while references resolve around it; a placeholder in the output."""
    return f"\x00{what}\x00"


def _unmark(value: str) -> str:
    return _MARK.sub(lambda m: placeholder(m.group(1)), value)


class _AnySecret(Mapping[str, str]):
    """`${{ secrets.X }}` for every X: secret values are the control plane's (`variables set --secret`)."""

    def __getitem__(self, key: str) -> str:
        return _mark(f"secrets.{key}")

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def inputs_from_files(root: Path, environment: str, settings: Settings, *,
                      infer_start: Callable[[EnvironmentConfig], EnvironmentConfig] | None = None) -> EnvironmentInputs:
    """Everything `render_environment` needs for `environment` of the project in `root`; BadInput (a SpecError, a
    NotFound for an environment the files do not declare) naming what is wrong. `infer_start`: the build's start
    command inference, for a spec that names none (the caller's: it reads the app's code)."""
    spec = load_project(root)
    config = spec.environment(environment)
    if not config.web.start_command and infer_start is not None:
        config = infer_start(config)
    kube = settings.kubernetes
    host = names.hostname(spec.name, environment, settings.domain, production=config.production)
    decl = spec.environments.get(environment)
    hosts = (host, *(decl.domains if decl is not None else ()))
    pull_request = int(environment[3:]) if spec.is_preview_instance(environment) and environment.startswith("pr-") \
        and environment[3:].isdigit() else None
    external = settings.postgres_url is not None
    namespace = naming.namespace(kube.namespace_prefix, spec.name, environment)
    database = names.database_name(spec.name, environment)  # the role and the database, as the control plane names them
    services: dict[str, Mapping[str, str]] = {}
    attached: dict[str, str] = {}
    if config.postgres is not None:
        attached["postgres"] = config.postgres.name
        services[config.postgres.name] = (
            {k: _mark(f"{config.postgres.name}.{k} (a database on the operator's server)")
             for k in ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")}
            if external else data_services.postgres_variables(
                service_host("postgres", namespace), database, _mark(f"{config.postgres.name}.PGPASSWORD"), database))
    if config.redis is not None:
        attached["redis"] = config.redis.name
        services[config.redis.name] = data_services.redis_variables(service_host("redis", namespace),
                                                                    _mark(f"{config.redis.name}.REDISPASSWORD"))
    raw, namespaces = environment_variables(config.variables, {}, {}, services, attached)
    namespaces = dict(namespaces) | {"secrets": _AnySecret()}
    try:
        resolved = resolve(raw, namespaces=namespaces, port=APP_PORT)
    except BadInput as err:
        raise BadInput(f"{environment}: {err}") from None
    control = kube.pods_reach_control_plane_at(settings.control_url)
    return EnvironmentInputs(
        project=spec.name,
        config=config,
        settings=kube,
        control_url=control,
        hosts=hosts,
        release=Release(id=NEXT_RELEASE, commit=placeholder("the commit deployed"), branch=config.branch,
                        archive_url=placeholder("the release archive's URL"),
                        archive_sha256=placeholder("the release archive's SHA-256")),
        variables={k: _unmark(v) for k, v in resolved.values.items()},
        credentials=Credentials(
            postgres_password=placeholder(f"{config.postgres.name}.PGPASSWORD" if config.postgres else "PGPASSWORD"),
            redis_password=placeholder(f"{config.redis.name}.REDISPASSWORD" if config.redis else "REDISPASSWORD"),
            release_token=placeholder("the release's fetch token"),
            backup_token=placeholder("the environment's backup token"),
            postgres_user=database, postgres_database=database),
        public_domain=host,
        pull_request=pull_request,
        external_postgres=external,
        new_database=config.postgres is not None,
    )
