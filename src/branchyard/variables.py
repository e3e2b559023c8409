"""Reference variables: `${{Postgres.DATABASE_URL}}`, `${{ secrets.X }}`, `${{shared.X}}`, `${{PORT}}`, `${{NAME}}`.

Pure: the caller supplies what each namespace holds. Unknown namespaces or names and cycles are errors
naming the variable and the reference; namespaces that exist but are not provisioned yet are reported
as pending and the variable is left out (the caller decides whether that is fatal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import BadInput

SHARED = "shared"  # ${{shared.NAME}}: the environment's own variable NAME (a secret included, masked as one)
REFERENCE = re.compile(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)(?:\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?\s*\}\}")


@dataclass
class Resolution:
    values: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)  # variable → why it was left out


class _Pending(Exception):
    pass


def resolve(
    raw: Mapping[str, str],
    *,
    namespaces: Mapping[str, Mapping[str, str]],
    pending_namespaces: Mapping[str, str] = {},
    port: int | str | None = None,
    lenient: bool = False,
) -> Resolution:
    """Resolve every variable of one environment (one replica when `port` is given).

    `lenient`: a variable with a bad reference is left out (reported as pending) instead of refused."""
    result = Resolution()
    done: dict[str, str] = {}

    def value_of(name: str, stack: tuple[str, ...]) -> str:
        if name in done:
            return done[name]
        if name in stack:
            cycle = " → ".join((*stack[stack.index(name):], name))
            raise BadInput(f"variables.{stack[0]}: reference cycle {cycle}")
        text = raw[name]

        def substitute(match: re.Match[str]) -> str:
            ns, key = match.group(1), match.group(2)
            ref = match.group(0)
            if key is None:  # ${{PORT}} or ${{NAME}} (same service)
                if ns == "PORT":
                    if port is None:
                        raise _Pending("PORT is only known per replica")
                    return str(port)
                if ns not in raw:
                    raise BadInput(f"variables.{name}: {ref} refers to an undefined variable {ns!r}")
                return value_of(ns, (*stack, name))
            if ns.lower() == SHARED:  # another variable of this environment, resolved like ${{NAME}}
                if key not in raw:
                    raise BadInput(f"variables.{name}: {ref}: shared has no variable {key!r}")
                return value_of(key, (*stack, name))
            if ns in pending_namespaces:
                raise _Pending(pending_namespaces[ns])
            space = _namespace(namespaces, ns)
            if space is None:
                known = ", ".join(sorted(namespaces)) or "none"
                raise BadInput(f"variables.{name}: {ref} refers to an unknown service {ns!r} (known: {known})")
            if key not in space:
                raise BadInput(f"variables.{name}: {ref}: {ns} has no variable {key!r}")
            return space[key]

        value = REFERENCE.sub(substitute, text)
        done[name] = value
        return value

    for name in raw:
        try:
            result.values[name] = value_of(name, ())
        except _Pending as why:
            result.pending[name] = str(why)
        except BadInput as err:
            if not lenient:
                raise
            result.pending[name] = str(err)
    return result


# Heroku-style attach: the variables an environment's own service gives its app when none of the environment's
# variables claims them. A kind's names are all or nothing, so an app never mixes our host with its own password.
ATTACHED: dict[str, tuple[str, ...]] = {
    "postgres": ("DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"),
    "redis": ("REDIS_URL", "REDISHOST", "REDISPORT", "REDISUSER", "REDISPASSWORD"),
}


def _claims(kind: str, name: str) -> bool:
    """Whether a variable the user defined takes `kind`'s wiring over: its own names, and for PostgreSQL any `PG*`
    (libpq reads them all: PGHOST from the user with PGPASSWORD from us would send our password elsewhere)."""
    return name in ATTACHED[kind] or (kind == "postgres" and name.startswith("PG"))


def attached_variables(defined: Iterable[str], services: Mapping[str, str]) -> dict[str, str]:
    """Variable → reference for what the environment's services provide and none of `defined` claims.

    `services`: kind ("postgres", "redis") → the namespace it is provisioned (or declared) under."""
    defined = list(defined)
    out: dict[str, str] = {}
    for kind, namespace in sorted(services.items()):
        if kind in ATTACHED and not any(_claims(kind, name) for name in defined):
            out |= {name: f"${{{{{namespace}.{name}}}}}" for name in ATTACHED[kind]}
    return out


def environment_variables(spec_variables: Mapping[str, str], plain: Mapping[str, str], secrets: Mapping[str, str],
                          services: Mapping[str, Mapping[str, str]], attached: Mapping[str, str] = {},
                          ) -> tuple[dict[str, str], dict[str, Mapping[str, str]]]:
    """An environment's raw variables and the namespaces they resolve in. Layers, lowest first: what its services
    provide (`attached`: kind → namespace, see attached_variables), then the spec, then `variables set`, then secrets.

    The one layering: a deploy, `variables list`, the isolation guard and a promotion plan all call this.
    `${{shared.NAME}}` is resolved by `resolve` against the raw variables themselves (see SHARED)."""
    user = dict(spec_variables) | dict(plain) | {k: f"${{{{ secrets.{k} }}}}" for k in secrets}
    return attached_variables(user, attached) | user, dict(services) | {"secrets": dict(secrets)}


def variable_sources(spec_variables: Mapping[str, str], plain: Mapping[str, str], secrets: Mapping[str, str],
                     attached: Mapping[str, str] = {}) -> dict[str, str]:
    """Where each of environment_variables' raw variables comes from: "secret", "set", "spec", or the namespace of the
    service that provides it (the same layers, the same order)."""
    provided = attached_variables([*spec_variables, *plain, *secrets], attached)
    layers = [(provided, None), (spec_variables, "spec"), (plain, "set"), (secrets, "secret")]
    sources: dict[str, str] = {}
    for layer, source in layers:
        sources |= {k: source or references(layer[k])[0] for k in layer}
    return dict(sorted(sources.items()))


def after_set(plain: Mapping[str, str], secrets: Mapping[str, str], pairs: Mapping[str, str], *,
              secret: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The stored (plain, secrets) once `variables set` stores `pairs`: a key is a variable or a secret, never both."""
    plain = {k: v for k, v in plain.items() if k not in pairs}
    secrets = {k: v for k, v in secrets.items() if k not in pairs}
    (secrets if secret else plain).update(pairs)
    return plain, secrets


def _namespace(namespaces: Mapping[str, Mapping[str, str]], ns: str) -> Mapping[str, str] | None:
    """Namespaces match case-insensitively (`Postgres`, `postgres`), as people write both."""
    if ns in namespaces:
        return namespaces[ns]
    for name, space in namespaces.items():
        if name.lower() == ns.lower():
            return space
    return None


def references(text: str) -> list[str]:
    """The namespaces referenced in one value (for planning and checks)."""
    return [m.group(1) for m in REFERENCE.finditer(text)]
