"""Manifests as YAML documents: one stream for stdout, or one file per object for a directory (apply order in the
file names, so `kubectl apply -f DIR` and GitOps tools see them in the same order). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as literal blocks, so a reviewer reads them as they run; never an anchor and
    alias (`&id001`/`*id001`) where two objects share a value: every document reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(obj: Mapping[str, Any]) -> str:
    return yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def stream(objects: Sequence[Mapping[str, Any]], header: Sequence[str] = ()) -> str:
    """`---`-separated documents, `header` as comments on top."""
    comments = "".join(f"# {line}\n" for line in header)
    return comments + "".join(f"---\n{dump(obj)}" for obj in objects)


def file_names(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """`00-namespace-branchyard-yoto-production.yaml`, `01-limitrange-environment.yaml`, …"""
    width = max(2, len(str(len(objects) - 1)))
    return [f"{i:0{width}d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml" for i, obj in enumerate(objects)]
