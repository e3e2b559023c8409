"""git's credential helper for branchyard remotes: `python -m branchyard.cli.credential get`.

git runs it at every push and fetch over HTTP(S) (the helper `init`/`link` configure for the control plane's URL),
so it imports no more than the context store: the whole CLI would add ~0.1 s to each push. It answers `get` with
the token of `BRANCHYARD_URL` when that names the URL git asks about, else of the stored context for that URL
(the current one first); `store` and `erase` do nothing (the token lives in the context store, git keeps nothing).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from ..errors import BadInput
from .contexts import ContextStore, config_dir, normalize_url, origin


def token_for(url: str, env: Mapping[str, str]) -> str | None:
    """The token for a control plane at `url` (scheme://host[:port]), or None."""
    env_url, env_token = env.get("BRANCHYARD_URL"), env.get("BRANCHYARD_TOKEN")
    if env_url and env_token:
        try:
            if origin(normalize_url(env_url)) == origin(url):
                return env_token.strip()
        except BadInput:
            pass
    try:
        found = ContextStore(config_dir(env)).for_url(url)
    except BadInput:
        return None
    return found[0].token if found else None


def answer(action: str, asked_text: str, env: Mapping[str, str]) -> str:
    """What the helper prints for git's `action` and the attributes it was given."""
    if action != "get":
        return ""
    asked = dict(line.split("=", 1) for line in asked_text.splitlines() if "=" in line)
    if not asked.get("host") or asked.get("protocol") not in ("http", "https"):
        return ""
    token = token_for(f"{asked['protocol']}://{asked['host']}", env)
    return f"username=branchyard\npassword={token}\n" if token else ""


def main(argv: list[str]) -> int:
    action = argv[1] if len(argv) > 1 else ""
    sys.stdout.write(answer(action, sys.stdin.read(), os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
