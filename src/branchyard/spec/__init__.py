"""The project spec: branchyard.toml + railway.toml/json (+ Procfile) → frozen, validated,
per-environment effective config. See docs/spec.md."""

from .loader import check, environment_problems, explain, load_project, procfile_web
from .model import (
    EnvironmentConfig,
    EnvironmentDecl,
    PostgresConfig,
    PreviewDecl,
    ProjectSpec,
    PromotionSpec,
    ProtectionDecl,
    RedisConfig,
    Rule,
    SanitizeSpec,
    WebConfig,
)
from .values import parse_cpu, parse_memory

__all__ = [
    "EnvironmentConfig",
    "EnvironmentDecl",
    "PostgresConfig",
    "PreviewDecl",
    "ProjectSpec",
    "PromotionSpec",
    "ProtectionDecl",
    "RedisConfig",
    "Rule",
    "SanitizeSpec",
    "WebConfig",
    "check",
    "environment_problems",
    "explain",
    "load_project",
    "parse_cpu",
    "parse_memory",
    "procfile_web",
]
