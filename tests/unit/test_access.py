"""access.py (pure): the least role of each permission, in and out of a protected environment, and the refusal's line."""

from __future__ import annotations

import pytest

from branchyard.access import GITHUB, SYSTEM, Actor, Permission, least_role, require
from branchyard.errors import Forbidden

P = Permission
LEAST = [
    # permission, least role outside protected environments, least role in a protected one
    (P.SELF, "viewer", "viewer"),
    (P.READ, "viewer", "viewer"),
    (P.DEPLOY, "member", "admin"),
    (P.CONFIGURE, "member", "admin"),
    (P.SHELL, "member", "admin"),
    (P.BACKUP, "member", "member"),
    (P.PROMOTE, "member", "member"),
    (P.APPROVE, "member", "member"),
    (P.ADMIN, "admin", "admin"),
]


@pytest.mark.parametrize(("permission", "open_role", "protected_role"), LEAST, ids=[p.value for p, _, _ in LEAST])
def test_least_roles(permission, open_role, protected_role) -> None:
    assert (least_role(permission), least_role(permission, protected=True)) == (open_role, protected_role)


def test_the_refusal_names_the_permission_the_environment_and_who_asked() -> None:
    mia = Actor("mia", 7, "member")
    with pytest.raises(Forbidden) as err:
        require(mia, P.CONFIGURE, environment="production", protected=True, what="variables set")
    assert str(err.value) == ("variables set: permission 'configure' in protected environment production needs role "
                              "admin; mia is member")
    assert err.value.http_status == 403
    require(mia, P.CONFIGURE, environment="staging", protected=False)  # passes
    with pytest.raises(Forbidden, match="^permission 'admin' needs role admin; mia is member$"):
        require(mia, P.ADMIN)
    with pytest.raises(Forbidden, match="vic is viewer"):
        require(Actor("vic", 8, "viewer"), P.BACKUP)
    with pytest.raises(Forbidden, match="ghost is not a user"):
        require(Actor("ghost", 9, None), P.READ)  # a user without a role holds nothing


def test_the_platforms_own_actors_pass() -> None:
    # `system` (the loop) and `github` (a verified delivery) act for rules checked elsewhere; a request's actor is a user
    for actor in (SYSTEM, GITHUB):
        require(actor, P.ADMIN)
        require(actor, P.DEPLOY, environment="production", protected=True)
