"""Domains and Routes against a real store (no Caddy: a router that records what it is told): who owns a domain
across projects, the routes an environment's domains get in each state, the spec's reconciliation (all or nothing),
certificate states kept from what the edge reports, and the ask endpoint through the real FastAPI app."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
from api_users import single_token
from conftest import new_home
from fastapi.testclient import TestClient

from branchyard import settings as settings_mod
from branchyard.api.app import create_app
from branchyard.backends.ports import CertificateStatus, Route
from branchyard.controller.domains import Domains, reconcile_declared
from branchyard.controller.routes import Routes
from branchyard.errors import BadInput, Conflict, NotFound
from branchyard.store import models as m
from branchyard.store.db import Store


class RecordingRouter:
    def __init__(self) -> None:
        self.applied: list[list[Route]] = []

    def ensure_running(self) -> None: ...

    def apply(self, routes: Sequence[Route]) -> None:
        self.applied.append(list(routes))

    def stop(self) -> None: ...


class EdgeCertificates:
    """What the edge would report: host → (notAfter, the CA's error)."""

    def __init__(self) -> None:
        self.known: dict[str, CertificateStatus] = {}
        self.forgotten: list[str] = []

    def certificate(self, host: str) -> CertificateStatus | None:
        return self.known.get(host)

    def local_root(self) -> str | None:
        return None

    def forget(self, host: str) -> None:
        self.forgotten.append(host)
        self.known.pop(host, None)


class World:
    def __init__(self, store: Store, routes: Routes, domains: Domains, router: RecordingRouter,
                 certs: EdgeCertificates) -> None:
        self.store, self.routes, self.domains, self.router, self.certs = store, routes, domains, router, certs

    def environment(self, project: str, name: str, **kw: Any) -> None:
        with self.store.session() as s:
            p = s.query(m.Project).filter_by(name=project).one_or_none()
            if p is None:
                p = m.Project(name=project, repo_path="/nonexistent")
                s.add(p)
                s.flush()
            s.add(m.Environment(project_id=p.id, name=name, production=name == "production", **kw))

    def served(self) -> dict[str, tuple[str, str, str]]:
        return {r.host: (r.project, r.environment, r.state) for r in self.router.applied[-1]}


@pytest.fixture
def world() -> Iterator[World]:
    home = new_home()
    settings = settings_mod.load({"BRANCHYARD_HOME": str(home), "BRANCHYARD_DOMAIN": "apps.example.com"})
    store = Store(settings.state_db)
    router, certs = RecordingRouter(), EdgeCertificates()
    routes = Routes(settings, store, router)
    try:
        yield World(store, routes, Domains(settings, store, routes=routes, certificates=certs), router, certs)
    finally:
        store.close()
        shutil.rmtree(home.parent, ignore_errors=True)


def test_a_domain_is_routed_with_its_environment_and_owned_once_across_projects(world: World) -> None:
    world.environment("yoto", "production")
    world.environment("yoto", "staging", state=m.ENV_SLEEPING)
    world.environment("shop", "production")
    world.domains.add("yoto", "production", "www.yoto.test")
    world.domains.add("yoto", "staging", "staging.yoto.test")
    assert world.served() == {  # no deployment yet: "unavailable"; asleep: the sleeping page, on every host
        "yoto.apps.example.com": ("yoto", "production", "unavailable"),
        "www.yoto.test": ("yoto", "production", "unavailable"),
        "yoto-staging.apps.example.com": ("yoto", "staging", "sleeping"),
        "staging.yoto.test": ("yoto", "staging", "sleeping"),
        "shop.apps.example.com": ("shop", "production", "unavailable"),
    }
    with pytest.raises(Conflict, match=r"^www\.yoto\.test is already a domain of project yoto, environment production$"):
        world.domains.add("shop", "production", "WWW.yoto.test")
    with pytest.raises(BadInput, match="hosts under apps.example.com are branchyard's generated ones"):
        world.domains.add("shop", "production", "yoto.apps.example.com")
    again = world.domains.add("yoto", "production", "www.yoto.test.")  # the same name again: nothing to do
    assert again["created"] is False
    assert world.routes.hosts() == frozenset(world.served())
    with pytest.raises(NotFound, match=r"^www\.yoto\.test is not a domain of project shop, environment production "
                                       r"\(its domains: none\)$"):
        world.domains.delete("shop", "production", "www.yoto.test")
    world.domains.delete("yoto", "production", "WWW.yoto.test")
    assert world.certs.forgotten == ["www.yoto.test"]  # its certificate goes with it
    assert "www.yoto.test" not in world.served() and "www.yoto.test" not in world.routes.hosts()


def test_a_domain_equal_to_a_generated_host_never_reaches_the_router_twice(world: World) -> None:
    """A project's own [project] domain can make a generated host equal to another's custom domain later: the
    generated host wins, and the router is never handed one host twice (it would refuse the whole config)."""
    world.environment("yoto", "production")
    world.environment("shop", "production")
    world.domains.add("yoto", "production", "shop.example.net")
    with pytest.raises(Conflict, match=r"^shop\.example\.net is already a domain of project yoto, environment production$"):
        world.domains.add("shop", "production", "shop.example.net")
    with world.store.session() as s:
        s.query(m.Project).filter_by(name="shop").one().domain = "example.net"  # its generated host is now shop.example.net
    world.routes.sync()
    hosts = [r.host for r in world.router.applied[-1]]
    assert len(hosts) == len(set(hosts))
    assert world.served()["shop.example.net"] == ("shop", "production", "unavailable")
    with pytest.raises(Conflict, match=r"^other\.example\.net is the generated host of project other, environment "):
        world.environment("other", "production")
        with world.store.session() as s:
            s.query(m.Project).filter_by(name="other").one().domain = "example.net"
        world.domains.add("yoto", "production", "other.example.net")


def test_spec_domains_are_reconciled_all_or_nothing(world: World) -> None:
    world.environment("yoto", "production")
    world.environment("yoto", "staging")
    world.domains.add("yoto", "production", "by-hand.yoto.test")

    def declare(env_name: str, *hosts: str) -> list[str]:
        with world.store.session() as s:
            p = s.query(m.Project).filter_by(name="yoto").one()
            env = s.query(m.Environment).filter_by(project_id=p.id, name=env_name).one()
            return reconcile_declared(world.store, s, p, env, hosts, base_domain="apps.example.com")

    assert declare("production", "www.yoto.test", "yoto.test") == [
        "domain www.yoto.test added (declared in branchyard.toml)", "domain yoto.test added (declared in branchyard.toml)"]
    assert declare("production", "www.yoto.test") == ["domain yoto.test removed (no longer in branchyard.toml)"]
    with pytest.raises(Conflict) as err:  # one refused: nothing of the list is taken, nothing released
        declare("staging", "new.yoto.test", "www.yoto.test")
    assert str(err.value) == ("branchyard.toml: environments.staging.domains: www.yoto.test is already a domain of "
                              "project yoto, environment production")
    with pytest.raises(BadInput, match=r"^branchyard.toml: environments.staging.domains: domain 'x.apps.example.com': "):
        declare("staging", "x.apps.example.com")
    assert [d["host"] for d in world.domains.list("yoto", "staging")] == []
    assert declare("production") == ["domain www.yoto.test removed (no longer in branchyard.toml)"]
    rows = world.domains.list("yoto", "production")  # a domain added by hand is the user's: the spec leaves it
    assert [(d["host"], d["source"]) for d in rows] == [("by-hand.yoto.test", "cli")]


def test_domain_list_keeps_what_the_edge_reports(world: World) -> None:
    world.environment("yoto", "production")
    for host in ("a.yoto.test", "b.yoto.test", "c.yoto.test"):
        world.domains.add("yoto", "production", host)
    until = dt.datetime(2099, 1, 2, 3, 4, 5)
    world.certs.known["a.yoto.test"] = CertificateStatus("a.yoto.test", until, "local")
    world.certs.known["b.yoto.test"] = CertificateStatus("b.yoto.test", None, None,
                                                         error="acme: error: 400 :: rejectedIdentifier :: not allowed")
    rows = {d["host"]: d for d in world.domains.list("yoto", "production")}
    assert rows["a.yoto.test"]["certificate"] == "issued until 2099-01-02"
    assert rows["a.yoto.test"]["certificate_not_after"] == "2099-01-02T03:04:05Z"
    assert rows["b.yoto.test"]["certificate"] == "failed: acme: error: 400 :: rejectedIdentifier :: not allowed"
    assert rows["c.yoto.test"]["certificate"] == "pending"
    assert all(d["certificate_checked_at"] for d in rows.values())
    with world.store.session() as s:  # stored, not only shown
        stored = {d.host: (d.cert_state, d.cert_not_after, d.cert_error) for d in s.query(m.Domain)}
    assert stored["a.yoto.test"] == ("issued", until, None)
    assert stored["b.yoto.test"][0] == "failed"


def test_deleting_an_environment_deletes_its_domains(world: World) -> None:
    world.environment("yoto", "production")
    world.environment("yoto", "pr-7", ephemeral=True)
    world.domains.add("yoto", "pr-7", "demo.yoto.test")
    with world.store.session() as s:
        s.delete(s.query(m.Environment).filter_by(name="pr-7").one())  # what Teardown does last
    world.routes.sync()
    assert "demo.yoto.test" not in world.served()
    world.domains.add("yoto", "production", "demo.yoto.test")  # free again


def test_the_ask_endpoint_through_the_api_app(world: World) -> None:
    world.environment("yoto", "production")
    world.environment("yoto", "pr-12", ephemeral=True)
    world.domains.add("yoto", "production", "www.yoto.test")
    ctl = cast(Any, type("Ctl", (), {"routes": world.routes}))  # the ask route reads only ctl.routes
    client = TestClient(create_app(ctl, gatekeeper=single_token("token")))
    for host, status in (("www.yoto.test", 200), ("yoto-pr-12.apps.example.com", 200), ("yoto.apps.example.com", 200),
                         ("yoto-pr-13.apps.example.com", 404), ("evil.test", 404), ("", 404)):
        response = client.get("/internal/tls/ask", params={"domain": host})
        assert (response.status_code, response.content) == (status, b""), host
    assert client.get("/internal/tls/ask").status_code == 404
    assert client.get("/internal/tls/ask", params={"domain": "www.yoto.test"}, headers={"authorization": "Bearer x"}
                      ).status_code == 200  # no token needed (and a wrong one changes nothing)
