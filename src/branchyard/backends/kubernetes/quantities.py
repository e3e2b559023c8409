"""Kubernetes resource quantities from the spec's sizes, and back. Pure.

The spec's MB are binary (1 GB = 1024 MB, as `memory = "1 GB"` parses), so they map to Mi; vCPUs to millicores.
"""

from __future__ import annotations

import math
import re

from ...errors import BadInput

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {None: 1, "m": 0.001, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
            "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def memory(mb: int) -> str:
    """512 → "512Mi", 1024 → "1Gi"."""
    return f"{mb // 1024}Gi" if mb % 1024 == 0 else f"{mb}Mi"


def cpu(vcpus: float) -> str:
    """1 → "1", 0.5 → "500m", 0.25 → "250m" (whole millicores, rounded up)."""
    milli = math.ceil(round(vcpus * 1000, 6))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def parse(quantity: str) -> float:
    """A quantity as a number: bytes for memory and storage, cores for CPU ("500m" → 0.5)."""
    m = _QUANTITY.match(str(quantity))
    if not m:
        raise BadInput(f"not a Kubernetes quantity: {quantity!r}")
    return float(m.group(1)) * _FACTORS[m.group(2)]


def memory_of(total_bytes: float) -> str:
    """Bytes back to Mi/Gi (whole Mi, rounded up)."""
    return memory(math.ceil(total_bytes / 1024**2))


def cpu_of(cores: float) -> str:
    return cpu(cores)
