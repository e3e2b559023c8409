"""A deployment's configuration snapshot, typed: what it was deployed with, read back with the spec's own defaults.

Stored as the JSON of `EnvironmentConfig.to_dict()` (Deployment.config_json), so a rollback runs with exactly
the settings it ran with. Readers get a `WebConfig` — the spec's dataclass — instead of a dict whose defaults
each reader would type in again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from ..errors import BranchyardError
from ..spec.model import EnvironmentConfig, ProcessConfig, WebConfig

_WEB_FIELDS = {f.name: f for f in dataclasses.fields(WebConfig)}


@dataclass(frozen=True)
class DeploymentConfig:
    web: WebConfig
    raw: dict[str, Any]  # the whole snapshot as stored (promotion plans compare it)
    processes: dict[str, ProcessConfig] = dataclasses.field(default_factory=dict)  # Procfile services (worker …)

    @classmethod
    def from_environment(cls, cfg: EnvironmentConfig) -> DeploymentConfig:
        return cls(web=cfg.web, raw=cfg.to_dict(), processes=dict(cfg.processes))

    @classmethod
    def from_json(cls, text: str) -> DeploymentConfig:
        """Parse a stored snapshot; keys a newer or older branchyard wrote that this one does not know are ignored."""
        try:
            raw = json.loads(text)
            web = raw.get("web") or {}
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in web.items() if k in _WEB_FIELDS}
            processes = {name: ProcessConfig(command=str(p["command"]), replicas=int(p.get("replicas", 1)))
                         for name, p in (raw.get("processes") or {}).items()}  # none before issue 17
            return cls(web=WebConfig(**values), raw=raw, processes=processes)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            raise BranchyardError(f"a deployment's configuration snapshot cannot be read: {err}") from None

    def to_json(self) -> str:
        return json.dumps(self.raw)


def web_of(config_json: str | None) -> WebConfig | None:
    """The web settings of a stored snapshot, or None when the deployment has none yet (still building)."""
    return DeploymentConfig.from_json(config_json).web if config_json else None
