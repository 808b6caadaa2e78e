"""Reading ``params.yaml``: stages pass typed values on to ``pipeline`` functions, never the raw dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

__all__ = ["get", "load_params"]


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Load the whole params file; a missing or malformed file is a `ConfigError` naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"params file {str(p)!r} not found (run stages from the project root).")
    with p.open() as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ConfigError(f"params file {str(p)!r} must hold a mapping at top level.")
    return data


def get(params: dict[str, Any], dotted: str, default: Any = ...) -> Any:
    """Look up ``a.b.c``; a missing key without a default is a `ConfigError` naming the key."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise ConfigError(f"`{dotted}` is missing from params.yaml (no `{part}`).")
        node = node[part]
    return node
