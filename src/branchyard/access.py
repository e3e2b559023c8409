"""Who may do what (pure): roles, permissions, the actor of a request, and the one decision table.

Three roles (Railway's workspace roles, Render's protected environments):

- `viewer` reads: status, deployments, logs, events, promotions, previews, variables with secrets masked.
- `member` also deploys, changes and opens shells in environments that are not protected, plans and confirms
  promotions, approves promotions and previews, takes backups.
- `admin` also does all of that in protected environments, and manages users and projects.

An environment is protected when its spec says `protected = true` (production is protected unless it says
`protected = false`). In a protected environment the environment-scoped permissions (`deploy`, `configure`,
`shell`) are admins' only; a member reaches production through a promotion, whose gates (approvals by other
people, smoke tests) are the control. Which permission each API route needs is declared on the route
(`api/permissions.py`); the CLI only reports the refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .errors import BadInput, Forbidden

VIEWER, MEMBER, ADMIN = "viewer", "member", "admin"
ROLES = (VIEWER, MEMBER, ADMIN)
_RANK = {VIEWER: 0, MEMBER: 1, ADMIN: 2}
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,38}")
RESERVED_NAMES = frozenset({"system", "github", "cli", "git", "branchyard"})  # actors that are not users


class Permission(str, Enum):
    """What a route needs. `scoped` permissions look at the environment named in the route (protected or not)."""

    SELF = "self"  # one's own identity and tokens: any authenticated user
    READ = "read"  # status, deployments, logs, events, promotions, previews, masked variables
    DEPLOY = "deploy"  # push, up, redeploy, rollback, wake (scoped)
    CONFIGURE = "configure"  # variables and secrets, scale, down, domains, plugins, restore, refresh, delete (scoped)
    SHELL = "shell"  # run, connect, revealed variables (scoped)
    BACKUP = "backup"  # take a backup (never loses anything, so not scoped)
    PROMOTE = "promote"  # plan, confirm, cancel a promotion (its gates decide the rest)
    APPROVE = "approve"  # approve a promotion or a fork's preview
    ADMIN = "admin"  # users, projects, GitHub settings, database templates

    @property
    def scoped(self) -> bool:
        return self in _SCOPED


_SCOPED = frozenset({Permission.DEPLOY, Permission.CONFIGURE, Permission.SHELL})
# The least role each permission needs in an environment that is not protected (and outside environments).
_LEAST = {
    Permission.SELF: VIEWER,
    Permission.READ: VIEWER,
    Permission.DEPLOY: MEMBER,
    Permission.CONFIGURE: MEMBER,
    Permission.SHELL: MEMBER,
    Permission.BACKUP: MEMBER,
    Permission.PROMOTE: MEMBER,
    Permission.APPROVE: MEMBER,
    Permission.ADMIN: ADMIN,
}


@dataclass(frozen=True)
class Actor:
    """Who does something: an authenticated user (id, name, role), or the platform itself (`system`, `github`)."""

    name: str
    user_id: int | None = None
    role: str | None = None

    @property
    def is_user(self) -> bool:
        return self.user_id is not None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "id": self.user_id, "role": self.role}


SYSTEM = Actor("system")  # the reconciler, the deployer's workers, recovery after a restart
GITHUB = Actor("github")  # a verified webhook delivery


def least_role(permission: Permission, *, protected: bool = False) -> str:
    """The least role that holds `permission` (in a protected environment when `protected`)."""
    if protected and permission.scoped:
        return ADMIN
    return _LEAST[permission]


def allowed(role: str, permission: Permission, *, protected: bool = False) -> bool:
    """Whether `role` holds `permission` (in a protected environment when `protected`)."""
    return _RANK.get(role, -1) >= _RANK[least_role(permission, protected=protected)]


def require(actor: Actor, permission: Permission, *, environment: str | None = None, protected: bool = False,
            what: str | None = None) -> None:
    """Forbidden (403) with one line naming the permission, unless `actor` holds it. The platform's own actors
    (`system`, `github`: no user id) act for rules checked elsewhere, and pass; a request's actor is always a user."""
    if not actor.is_user:
        return
    if actor.role is not None and allowed(actor.role, permission, protected=protected):
        return
    needed = least_role(permission, protected=protected)
    where = f" in protected environment {environment}" if protected and permission.scoped and environment else ""
    doing = f"{what}: " if what else ""
    raise Forbidden(f"{doing}permission {permission.value!r}{where} needs role {needed}; "
                    f"{actor.name} is {actor.role or 'not a user'}")


def check_role(raw: str) -> str:
    role = (raw or "").strip().lower()
    if role not in ROLES:
        raise BadInput(f"users add: --role {raw!r}: expected one of admin, member, viewer")
    return role


def check_user_name(raw: str) -> str:
    """A user name: lower-case letters, digits and . _ - (at most 39, GitHub's limit), not a platform actor's."""
    name = (raw or "").strip()
    if not _USER_NAME.fullmatch(name):
        raise BadInput(f"user name {raw!r}: expected lower-case letters, digits and . _ - (at most 39, "
                       "starting with a letter or digit)")
    if name in RESERVED_NAMES:
        raise BadInput(f"user name {name!r} is kept for the platform's own events ({', '.join(sorted(RESERVED_NAMES))})")
    return name
