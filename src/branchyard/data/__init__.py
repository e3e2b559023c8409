"""Data tooling for environments' databases: sanitized refreshes (more to come: migrate, seed, backup)."""

from .sanitize import SCRATCH_PREFIX, drop_leftover_scratches, plan_sanitize, refresh

__all__ = ["SCRATCH_PREFIX", "drop_leftover_scratches", "plan_sanitize", "refresh"]
