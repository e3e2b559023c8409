"""`branchyard tls root`: the local CA's root from Caddy's storage, and the one-line refusals around it."""

from __future__ import annotations

from typing import Any, cast

import pytest

from branchyard.backends.local.certificates import CaddyCertificates
from branchyard.controller.domains import Domains
from branchyard.errors import NotFound
from branchyard.settings import load

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def domains(tmp_path, tls: str, roots) -> Domains:
    settings = load({"BRANCHYARD_HOME": str(tmp_path / "home"), "BRANCHYARD_TLS": tls})
    none = cast(Any, None)  # local_ca_root reads the settings and the certificates only
    return Domains(settings, none, routes=none, certificates=CaddyCertificates(roots))


def test_the_root_comes_from_the_first_storage_that_has_one(tmp_path):
    edge, routes = tmp_path / "edge", tmp_path / "routes"
    (routes / "pki" / "authorities" / "local").mkdir(parents=True)
    (routes / "pki" / "authorities" / "local" / "root.crt").write_text(PEM)
    assert CaddyCertificates([edge, routes]).local_root() == PEM
    assert CaddyCertificates([edge]).local_root() is None
    assert domains(tmp_path, "internal", [edge, routes]).local_ca_root() == PEM


@pytest.mark.parametrize(("tls", "message"), [
    ("off", "the router does not sign its own certificates: BRANCHYARD_TLS is 'off' (`internal` makes a local CA)"),
    ("acme", "the router does not sign its own certificates: BRANCHYARD_TLS is 'acme' (`internal` makes a local CA)"),
    ("internal", "the router's local CA does not exist yet: it is made when the router starts with "
                 "BRANCHYARD_TLS=internal (see `branchyard server status`)"),
])
def test_no_root_to_give_says_why(tmp_path, tls, message):
    with pytest.raises(NotFound) as err:
        domains(tmp_path, tls, [tmp_path / "empty"]).local_ca_root()
    assert str(err.value) == message
