"""Custom domains: `domain add/list/delete`, the ones branchyard.toml declares (reconciled when an environment
deploys), and each domain's certificate state as the edge reports it. A domain is routed to its environment exactly
like the environment's generated host (controller/routes.py); deleting the environment deletes its domains."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import domains as d
from .. import names
from ..access import SYSTEM, Actor
from ..backends.ports import Certificates
from ..errors import BadInput, Conflict, NotFound
from ..settings import Settings
from ..store import models as m
from ..store.db import Store
from .routes import Routes


class Domains:
    def __init__(self, settings: Settings, store: Store, *, routes: Routes, certificates: Certificates | None) -> None:
        self.settings = settings
        self.store = store
        self.routes = routes
        self.certificates = certificates  # None: this machine has no TLS edge (every certificate stays pending)

    def add(self, project: str, env_name: str, host: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Attach `host` to the environment (routed at once); Conflict naming the owner when it is taken."""
        host = names.custom_domain(host, generated_base=self.settings.domain)
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            row = s.scalar(select(m.Domain).where(m.Domain.host == host))
            created = row is None
            if row is None:
                problem = taken(s, host, env, base_domain=self.settings.domain)
                if problem:
                    raise Conflict(problem)
                row = m.Domain(environment_id=env.id, host=host, source=d.SOURCE_CLI)
                s.add(row)
                self.store.record(s, project, "domain.added", f"{host} added to {env_name}", environment=env_name, actor=actor)
            elif row.environment_id != env.id:
                raise Conflict(owned_by(s, row))
            s.flush()
            result = domain_dict(row) | {"url": self.settings.public_url(host)}
        self.routes.sync()  # routed before the answer: `domain add` then a request works
        return result | {"created": created}

    def delete(self, project: str, env_name: str, host: str, *, actor: Actor = SYSTEM) -> dict[str, Any]:
        """Detach `host` from the environment (no longer routed, no new certificate); NotFound if it is not one of its."""
        wanted = d.asked_host(host) or host
        with self.store.session() as s:
            p = self.store.project(s, project)
            env = self.store.environment(s, p, env_name)
            row = s.scalar(select(m.Domain).where(m.Domain.host == wanted, m.Domain.environment_id == env.id))
            if row is None:
                have = ", ".join(hosts_of(s, env.id)) or "none"
                raise NotFound(f"{host} is not a domain of project {project}, environment {env_name} (its domains: {have})")
            if row.source == d.SOURCE_SPEC:
                raise BadInput(f"{wanted} is declared in branchyard.toml (environments.{env_name}.domains): remove it "
                               "there and deploy; the deploy detaches it")
            s.delete(row)
            self.store.record(s, project, "domain.deleted", f"{wanted} deleted from {env_name}", environment=env_name,
                              actor=actor)
        self.routes.sync()
        if self.certificates is not None:
            self.certificates.forget(wanted)
        return {"deleted": wanted}

    def list(self, project: str, env_name: str) -> list[dict[str, Any]]:
        """The environment's domains with their certificate state, asked of the edge now and stored."""
        with self.store.session() as s:
            env = self.store.environment(s, self.store.project(s, project), env_name)
            rows = list(s.scalars(select(m.Domain).where(m.Domain.environment_id == env.id).order_by(m.Domain.host)))
            now = m.utcnow()
            for row in rows:
                self._observe(row, now)
            return [domain_dict(row) | {"url": self.settings.public_url(row.host)} for row in rows]

    def local_ca_root(self) -> str:
        """The PEM of the root the router signs certificates with in `internal` mode (for browsers, curl --cacert)."""
        if self.settings.tls != "internal":
            raise NotFound(f"the router does not sign its own certificates: BRANCHYARD_TLS is {self.settings.tls!r} "
                           "(`internal` makes a local CA)")
        pem = self.certificates.local_root() if self.certificates is not None else None
        if pem is None:
            raise NotFound("the router's local CA does not exist yet: it is made when the router starts with "
                           "BRANCHYARD_TLS=internal (see `branchyard server status`)")
        return pem

    def _observe(self, row: m.Domain, now: Any) -> None:
        """Ask the edge about one domain's certificate; keep what it says (state, notAfter, the CA's error)."""
        if self.certificates is None:
            return
        status = self.certificates.certificate(row.host)
        state = d.certificate_state(status.not_after if status else None, status.error if status else None, now)
        row.cert_state, row.cert_not_after, row.cert_error = state.state, state.not_after, state.error
        row.cert_checked_at = now


def taken(s: Session, host: str, env: m.Environment, *, base_domain: str) -> str | None:
    """Why `host` cannot become a domain of `env`: another environment's domain or generated host; None when free."""
    row = s.scalar(select(m.Domain).where(m.Domain.host == host))
    if row is not None and row.environment_id != env.id:
        return owned_by(s, row)
    for project, domain, env_name, production in s.execute(
        select(m.Project.name, m.Project.domain, m.Environment.name, m.Environment.production).join(m.Environment)
    ):
        if names.hostname(project, env_name, domain or base_domain, production=production) == host:
            return f"{host} is the generated host of project {project}, environment {env_name}"
    return None


def owned_by(s: Session, row: m.Domain) -> str:
    env = s.get(m.Environment, row.environment_id)
    project = s.get(m.Project, env.project_id)
    return f"{row.host} is already a domain of project {project.name}, environment {env.name}"


def hosts_of(s: Session, env_id: int) -> list[str]:
    """An environment's custom domains, sorted."""
    return list(s.scalars(select(m.Domain.host).where(m.Domain.environment_id == env_id).order_by(m.Domain.host)))


def reconcile_declared(store: Store, s: Session, p: m.Project, env: m.Environment, declared: Iterable[str], *,
                       base_domain: str) -> list[str]:
    """Make the environment's spec-declared domains exactly `declared` (branchyard.toml, already checked by the spec
    parser), in the caller's transaction: new ones added, ones no longer declared removed; domains added with
    `domain add` are left alone. BadInput/Conflict (one line, nothing changed) when one is refused. Returns what
    changed, for the deploy log."""
    where = f"branchyard.toml: environments.{env.name}.domains"
    wanted: list[str] = []
    for value in declared:
        try:
            wanted.append(names.custom_domain(value, generated_base=base_domain))
        except BadInput as err:
            raise BadInput(f"{where}: {err}") from None
    for host in wanted:
        problem = taken(s, host, env, base_domain=base_domain)
        if problem:
            raise Conflict(f"{where}: {problem}")
    rows = {row.host: row for row in s.scalars(select(m.Domain).where(m.Domain.environment_id == env.id))}
    changed = []
    for host, row in rows.items():
        if row.source == d.SOURCE_SPEC and host not in wanted:
            s.delete(row)
            changed.append(f"domain {host} removed (no longer in branchyard.toml)")
    for host in wanted:
        if host not in rows:
            s.add(m.Domain(environment_id=env.id, host=host, source=d.SOURCE_SPEC))
            changed.append(f"domain {host} added (declared in branchyard.toml)")
    for line in changed:
        store.record(s, p.name, "domain.declared", line, environment=env.name)
    return changed


def domain_dict(row: m.Domain) -> dict[str, Any]:
    state = d.CertificateState(row.cert_state or d.PENDING, row.cert_not_after, row.cert_error)
    return {
        "host": row.host,
        "source": row.source,
        "certificate": state.text(),
        "certificate_state": state.state,
        "certificate_not_after": row.cert_not_after.isoformat() + "Z" if row.cert_not_after else None,
        "certificate_error": row.cert_error,
        "certificate_checked_at": row.cert_checked_at.isoformat() + "Z" if row.cert_checked_at else None,
    }
