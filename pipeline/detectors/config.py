"""Parsing a detector's params entry: ``detectors.<name>`` merged over the shared ``train`` recipe.

``detectors.<name>`` holds ``composition`` (a key of `COMPOSITIONS` or ``control``), optionally ``cnnspot``
(CNNSpot augmentation settings) and any `DetectorTrainConfig` key that overrides ``train.<key>`` for this
detector only (e.g. ``backbone: resnet50``). Keep overrides rare: Table III compares inputs only when every
ablation shares one recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.detectors.inputs import COMPOSITIONS, CONTROL, CNNSpotAugment
from pipeline.detectors.train import DetectorTrainConfig
from pipeline.errors import ConfigError

__all__ = ["DetectorSpec", "parse_detector_spec"]


@dataclass(frozen=True, kw_only=True)
class DetectorSpec:
    """A detector as the stages run it."""

    name: str
    composition: str
    train: DetectorTrainConfig
    cnnspot: CNNSpotAugment | None = None


def parse_detector_spec(
    name: str, entry: Mapping[str, Any], train: Mapping[str, Any], *, seed: int
) -> DetectorSpec:
    """Validate ``detectors.<name>`` and merge it over ``train``; ``seed`` is ``base.seed``.

    A ``seed`` key in ``train`` (or in ``detectors.<name>``) replaces it for detectors only, so a
    seed-variance run (`dvc exp run -S train.seed=1`) re-trains detectors and never a generator; null keeps
    ``base.seed``.

    Raises:
        ConfigError: unknown composition or keys (named, with the allowed values).
    """
    if not isinstance(entry, Mapping):
        raise ConfigError(f"`detectors.{name}` must be a mapping with `composition`. Got {entry!r} instead.")
    if not isinstance(train, Mapping):
        raise ConfigError(f"`train` must be a mapping of DetectorTrainConfig keys. Got {train!r} instead.")
    comp = entry.get("composition")
    allowed = (*COMPOSITIONS, CONTROL)
    if comp not in allowed:
        raise ConfigError(f"`detectors.{name}.composition` must be one of {allowed}. Got {comp!r} instead.")
    overrides = {k: v for k, v in entry.items() if k not in ("composition", "cnnspot")}
    fields = set(DetectorTrainConfig.__dataclass_fields__)
    unknown = sorted((set(overrides) | set(train)) - fields)
    if unknown:
        raise ConfigError(
            f"unknown keys {unknown} in `train` / `detectors.{name}`; allowed: {sorted(fields)}."
        )
    merged = {**dict(train), **overrides}
    chosen = merged.get("seed")
    if chosen is None:
        chosen = seed
    elif isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 0:
        raise ConfigError(
            f"`train.seed` / `detectors.{name}.seed` must be a non-negative int or null. Got {chosen!r}."
        )
    config = DetectorTrainConfig.from_dict({**merged, "seed": int(chosen)})
    aug = None
    if "cnnspot" in entry:
        if COMPOSITIONS.get(comp) is None or COMPOSITIONS[comp].augment != "cnnspot":
            raise ConfigError(f"`detectors.{name}.cnnspot` applies only to the `cnnspot` composition.")
        raw = entry["cnnspot"]
        keys = set(CNNSpotAugment.__dataclass_fields__)
        if not isinstance(raw, Mapping) or set(raw) - keys:
            raise ConfigError(f"`detectors.{name}.cnnspot` takes keys {sorted(keys)}. Got {raw!r} instead.")
        aug = CNNSpotAugment(**dict(raw))
    return DetectorSpec(name=name, composition=str(comp), train=config, cnnspot=aug)
