"""Which control plane a command talks to: the machine's own (BRANCHYARD_HOME's server.json), or a remote one.

Precedence (`choose`, pure, table-tested in tests/unit/test_cli_contexts.py):
  1. `--context NAME` (`local` names the machine's own control plane);
  2. `BRANCHYARD_URL` + `BRANCHYARD_TOKEN` (CI); `BRANCHYARD_TOKEN` alone is a token for the machine's own control
     plane (another user's than the machine's admin token in server.json: `local_token`);
  3. the stored current context (`branchyard login`, `branchyard context use`);
  4. the machine's own control plane, as before contexts existed.

Contexts are kept in `$XDG_CONFIG_HOME/branchyard/contexts.json` (else `~/.config/branchyard/`), mode 0600, the
directory 0700: the file holds tokens. Nothing here prints a token.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import errors

LOCAL = "local"  # the machine's own control plane; not a stored context
ENV_TARGET = "BRANCHYARD_URL"  # the name shown for a target given by the environment
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


@dataclass(frozen=True)
class Target:
    """A remote control plane: its API URL and token (never shown), and the name it was chosen by."""

    name: str
    url: str
    token: str = field(repr=False)


def config_dir(env: Mapping[str, str]) -> Path:
    """$XDG_CONFIG_HOME/branchyard, else ~/.config/branchyard (HOME from `env`)."""
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "branchyard"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".config" / "branchyard"


def normalize_url(raw: str, *, what: str = "URL") -> str:
    """An http(s):// base URL without a trailing slash; BadInput naming `what` otherwise (credentials not shown)."""
    url = (raw or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise errors.BadInput(f"{what}: expected the control plane's http(s):// URL like https://deploy.example.com, "
                              f"got {_shown(raw)}")
    if parts.username or parts.password:
        raise errors.BadInput(f"{what}: a URL with credentials (not shown); the token goes in separately")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise errors.BadInput(f"{what}: bad port in {_shown(raw)}") from None
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path}"


def _shown(raw: str) -> str:
    return "a URL with credentials (not shown)" if "@" in (raw or "") else repr(raw)


def default_name(url: str) -> str:
    """A context's default name: its URL's host (and port)."""
    return urlsplit(url).netloc


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or "") or name == LOCAL:
        raise errors.BadInput(f"context name {name!r}: use letters, digits and . _ : - (and not {LOCAL!r})")
    return name


def choose(flag: str | None, env: Mapping[str, str], stored: Mapping[str, Any]) -> Target | None:
    """The remote control plane to talk to, or None for the machine's own (see the module's docstring)."""
    contexts = stored.get("contexts") or {}
    if flag is not None:
        if flag == LOCAL:
            return None
        if flag not in contexts:
            raise errors.BadInput(f"--context {flag}: no such context (known: {_known(contexts)}); "
                                  "`branchyard login URL` adds one")
        return _target(flag, contexts[flag])
    url, token = env.get("BRANCHYARD_URL") or "", env.get("BRANCHYARD_TOKEN") or ""
    if url and not token:
        raise errors.BadInput("BRANCHYARD_TOKEN is not set: BRANCHYARD_URL needs the token of a user there")
    if url:
        return Target(ENV_TARGET, normalize_url(url, what="BRANCHYARD_URL"), token.strip())
    if token.strip():
        return None  # this machine's control plane, as the token's user (local_token)
    current = stored.get("current")
    if current and current != LOCAL:
        if current not in contexts:
            raise errors.BadInput(f"the current context {current!r} is not stored any more; "
                                  f"`branchyard context use NAME` (known: {_known(contexts)})")
        return _target(current, contexts[current])
    return None


def local_token(env: Mapping[str, str]) -> str | None:
    """The token to use with the machine's own control plane: BRANCHYARD_TOKEN when set (a user's), else None
    (the machine's admin token in BRANCHYARD_HOME/server.json)."""
    return (env.get("BRANCHYARD_TOKEN") or "").strip() or None


def _known(contexts: Mapping[str, Any]) -> str:
    return ", ".join([LOCAL, *sorted(contexts)])


def _target(name: str, entry: Mapping[str, str]) -> Target:
    return Target(name, entry["url"], entry["token"])


class ContextStore:
    """contexts.json: {"current": NAME|null, "contexts": {NAME: {"url": URL, "token": TOKEN}}}."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "contexts.json"

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"current": None, "contexts": {}}
        except (OSError, ValueError) as err:
            raise errors.BadInput(f"{self.path}: cannot read the stored contexts ({type(err).__name__}); "
                                  "fix or delete the file and log in again") from None
        if not isinstance(data, dict) or not isinstance(data.get("contexts", {}), dict):
            raise errors.BadInput(f"{self.path}: not a contexts file; fix or delete it and log in again")
        return {"current": data.get("current"), "contexts": data.get("contexts") or {}}

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover .tmp file
        os.replace(tmp, self.path)

    def add(self, name: str, url: str, token: str) -> None:
        """Store (or replace) a context and make it the current one."""
        data = self.load()
        data["contexts"][check_name(name)] = {"url": url, "token": token}
        data["current"] = name
        self._save(data)

    def remove(self, name: str) -> None:
        data = self.load()
        if name not in data["contexts"]:
            raise errors.BadInput(f"logout: no context {name!r} (known: {_known(data['contexts'])})")
        del data["contexts"][name]
        if data["current"] == name:
            data["current"] = None
        self._save(data)

    def use(self, name: str) -> None:
        data = self.load()
        if name != LOCAL and name not in data["contexts"]:
            raise errors.BadInput(f"context use: no context {name!r} (known: {_known(data['contexts'])})")
        data["current"] = None if name == LOCAL else name
        self._save(data)

    def for_url(self, url: str) -> list[Target]:
        """Stored contexts whose URL has the scheme, host and port of `url` (the current one first)."""
        data = self.load()
        want = origin(url)
        found = [_target(n, e) for n, e in data["contexts"].items() if origin(e["url"]) == want]
        return sorted(found, key=lambda t: t.name != data["current"])


def origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) of a URL, the port made explicit: what a credential or a context is matched by."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"
