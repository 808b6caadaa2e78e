"""Parameter profiles: named override files in ``profiles/`` deep-merged onto ``params.yaml``.

``quick`` is the test/CI profile (minutes, built-in faces); ``full`` is the full demo on a real-face
folder (hours on a 2-core CPU). Applying a profile rewrites ``params.yaml`` so the change is visible
in ``git diff`` and tracked by DVC like any other parameter edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

__all__ = ["apply_profile", "deep_merge", "list_profiles"]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def list_profiles(profiles_dir: Path) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.yaml"))


def apply_profile(name: str, params_file: Path, profiles_dir: Path) -> dict[str, Any]:
    """Merge ``profiles/<name>.yaml`` onto ``params_file`` in place and return the result."""
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"profile {name!r} not found in {str(profiles_dir)!r}; have {list_profiles(profiles_dir)}."
        )
    base = yaml.safe_load(params_file.read_text()) or {}
    merged = deep_merge(base, yaml.safe_load(path.read_text()) or {})
    params_file.write_text(yaml.safe_dump(merged, sort_keys=False, width=110))
    return merged
