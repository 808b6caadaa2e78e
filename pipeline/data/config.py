"""Typed, validated settings of the ``prepare`` stage, built from the ``params.yaml`` sections.

A dataset entry (``datasets.<name>``) and the ``prepare`` section are checked here once, so every mistake
is a `ConfigError` naming the key, the value and what is allowed, before any file is read. The schema is
documented in ``pipeline.data.prepare`` and ``docs/snippets/prepare.yaml``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.data.manifest import FAMILIES, SPLITS
from pipeline.errors import ConfigError

__all__ = [
    "LAYOUTS",
    "SPLIT_MODES",
    "DatasetConfig",
    "Layout",
    "PrepareConfig",
    "SplitConfig",
    "SplitMode",
    "parse_dataset_config",
    "parse_prepare_config",
    "parse_recode",
]

Layout = Literal["asfd", "binary", "list"]
SplitMode = Literal["column", "protocol", "ratio"]
LAYOUTS: tuple[str, ...] = ("asfd", "binary", "list")
SPLIT_MODES: tuple[str, ...] = ("column", "protocol", "ratio")
DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """How accepted images are assigned to train/val/test.

    Args:
        mode (`SplitMode`): `column` (the list file's `split`), `protocol` (ASFD: `train_generators` split by
            `ratios`, `test_generators` all to test) or `ratio` (every generator split by `ratios`).
        seed (`int`): seed of the deterministic shuffle.
        ratios (`dict[str, float]`): train/val/test fractions, non-negative, summing to 1.
        train_generators, test_generators (`tuple[str, ...]`): protocol mode only.
        required (`tuple[str, ...]`): splits that must not end up empty.
    """

    mode: SplitMode = "ratio"
    seed: int = 0
    ratios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    train_generators: tuple[str, ...] = ()
    test_generators: tuple[str, ...] = ()
    required: tuple[str, ...] = SPLITS


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """One dataset folder and how to read labels from it.

    Args:
        name (`str`): dataset name (the key under `datasets`).
        layout (`Layout`): `asfd`, `binary` or `list`.
        root (`Path`): the dataset folder (resolved).
        list_file (`Path | None`): list layout: CSV or Parquet with `path`, `family`, `generator` [, `split`].
        families (`dict[str, str]`): generator -> family.
        fake_family (`str | None`): binary: family of `1_fake` files whose generator is not in `families`.
        columns (`dict[str, str]`): list layout: our column -> the file's column (e.g. family: label).
        split (`SplitConfig`): split settings.
    """

    name: str
    layout: Layout
    root: Path
    list_file: Path | None = None
    families: dict[str, str] = field(default_factory=dict)
    fake_family: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    """Decoding and preprocessing settings shared by every dataset.

    Args:
        resolution (`int`): side of the cached square images (`data.resolution`).
        recode (`str`): `none`, `png` or `jpeg:Q` (1 <= Q <= 100).
        max_pixels (`int`): decompression-bomb limit on width x height, checked from the header.
        min_size (`int`): images with a smaller width or height are rejected.
        chunk_images, shard_images (`int`): Zarr chunk and shard sizes in images (`cache.*`).
        workers (`int`): decoding processes; 0 = automatic (up to 2 when there are many files).
    """

    resolution: int = 32
    recode: str = "none"
    max_pixels: int = 40_000_000
    min_size: int = 16
    chunk_images: int = 64
    shard_images: int = 1024
    workers: int = 0


def _positive_int(value: Any, key: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"`{key}` must be an integer >= {minimum}. Got {value!r} instead.")
    return value


def parse_recode(value: Any, key: str = "prepare.recode") -> str:
    """Validate ``none`` | ``png`` | ``jpeg:Q`` (1 <= Q <= 100) and return it normalised to lower case."""
    text = str(value).strip().lower()
    if text in ("none", "png"):
        return text
    m = re.fullmatch(r"jpeg:(\d{1,3})", text)
    if m and 1 <= int(m.group(1)) <= 100:
        return f"jpeg:{int(m.group(1))}"
    raise ConfigError(f"`{key}` must be none, png or jpeg:Q with 1 <= Q <= 100. Got {value!r} instead.")


def parse_prepare_config(
    section: Mapping[str, Any] | None,
    *,
    resolution: int,
    chunk_images: int,
    shard_images: int,
) -> PrepareConfig:
    """Build a `PrepareConfig` from the ``prepare`` params section and the shared keys."""
    sec = dict(section or {})
    unknown = sorted(set(sec) - {"recode", "max_pixels", "min_size", "workers"})
    if unknown:
        raise ConfigError(
            f"unknown keys {unknown} under `prepare`; allowed: recode, max_pixels, min_size, workers."
        )
    return PrepareConfig(
        resolution=_positive_int(resolution, "data.resolution"),
        recode=parse_recode(sec.get("recode", "none")),
        max_pixels=_positive_int(sec.get("max_pixels", 40_000_000), "prepare.max_pixels"),
        min_size=_positive_int(sec.get("min_size", 16), "prepare.min_size"),
        chunk_images=_positive_int(chunk_images, "cache.chunk_images"),
        shard_images=_positive_int(shard_images, "cache.shard_images"),
        workers=_positive_int(sec.get("workers", 0), "prepare.workers", minimum=0),
    )


def _family(value: Any, key: str) -> str:
    if value not in FAMILIES:
        raise ConfigError(f"`{key}` must be one of {FAMILIES}. Got {value!r} instead.")
    return str(value)


def _generators(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"`{key}` must be a list of generator names. Got {value!r} instead.")
    return tuple(str(v) for v in value)


def _parse_split(name: str, sec: Mapping[str, Any] | None, *, default_seed: int, layout: str) -> SplitConfig:
    prefix = f"datasets.{name}.split"
    sec = dict(sec or {})
    unknown = sorted(set(sec) - {"mode", "seed", "ratios", "train_generators", "test_generators", "required"})
    if unknown:
        raise ConfigError(f"unknown keys {unknown} under `{prefix}`.")
    mode = sec.get("mode", "ratio")
    if mode not in SPLIT_MODES:
        raise ConfigError(f"`{prefix}.mode` must be one of {SPLIT_MODES}. Got {mode!r} instead.")
    if mode == "column" and layout != "list":
        raise ConfigError(
            f"`{prefix}.mode` is column but `datasets.{name}.layout` is {layout!r}: only the list layout "
            "has a `split` column. Use ratio or protocol."
        )
    seed = sec.get("seed", default_seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"`{prefix}.seed` must be an integer. Got {seed!r} instead.")
    raw = sec.get("ratios", DEFAULT_RATIOS)
    if not isinstance(raw, Mapping) or set(raw) - set(SPLITS):
        raise ConfigError(
            f"`{prefix}.ratios` must map a subset of {SPLITS} to fractions. Got {raw!r} instead."
        )
    ratios = {s: float(raw.get(s, 0.0)) for s in SPLITS}
    if any(not math.isfinite(v) or v < 0 for v in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
        raise ConfigError(
            f"`{prefix}.ratios` must be non-negative fractions summing to 1. Got {dict(raw)!r} instead."
        )
    train_g = _generators(sec.get("train_generators"), f"{prefix}.train_generators")
    test_g = _generators(sec.get("test_generators"), f"{prefix}.test_generators")
    if mode == "protocol":
        if not train_g:
            raise ConfigError(f"`{prefix}.train_generators` must list generators when mode is protocol.")
        overlap = sorted(set(train_g) & set(test_g))
        if overlap:
            raise ConfigError(
                f"`{prefix}.train_generators` and `test_generators` overlap: {overlap}; a generator "
                "is either split by ratios or held out for test."
            )
    if "required" in sec:
        required = _generators(sec["required"], f"{prefix}.required")
        if set(required) - set(SPLITS):
            raise ConfigError(f"`{prefix}.required` must be a subset of {SPLITS}. Got {required!r} instead.")
    elif mode == "column":
        required = SPLITS
    else:
        required = tuple(s for s in SPLITS if ratios[s] > 0 or (mode == "protocol" and s == "test"))
    return SplitConfig(
        mode=mode,
        seed=seed,
        ratios=ratios,
        train_generators=train_g,
        test_generators=test_g,
        required=required,
    )


def parse_dataset_config(
    name: str, section: Mapping[str, Any] | None, *, base_dir: Path, default_seed: int = 0
) -> DatasetConfig:
    """Build a `DatasetConfig` from ``datasets.<name>``; relative paths are resolved against ``base_dir``.

    Raises:
        ConfigError: unknown layout or key, missing root folder or list file, bad families or split settings.
    """
    prefix = f"datasets.{name}"
    if not isinstance(section, Mapping):
        raise ConfigError(f"`{prefix}` must be a mapping with at least `layout` and `root`. Got {section!r}.")
    sec = dict(section)
    allowed = {"layout", "root", "list_file", "families", "fake_family", "columns", "split"}
    unknown = sorted(set(sec) - allowed)
    if unknown:
        raise ConfigError(f"unknown keys {unknown} under `{prefix}`; allowed: {sorted(allowed)}.")
    layout = sec.get("layout")
    if layout not in LAYOUTS:
        raise ConfigError(f"`{prefix}.layout` must be one of {LAYOUTS}. Got {layout!r} instead.")
    if not sec.get("root"):
        raise ConfigError(f"`{prefix}.root` is missing: give the dataset folder.")
    root = Path(str(sec["root"])).expanduser()
    root = (root if root.is_absolute() else base_dir / root).resolve()
    if not root.is_dir():
        raise ConfigError(f"`{prefix}.root` folder {str(root)!r} does not exist or is not a folder.")
    families_raw = sec.get("families") or {}
    if not isinstance(families_raw, Mapping):
        raise ConfigError(f"`{prefix}.families` must map generator -> family. Got {families_raw!r} instead.")
    families = {str(g): _family(f, f"{prefix}.families.{g}") for g, f in families_raw.items()}
    fake_family = sec.get("fake_family")
    if fake_family is not None:
        fake_family = _family(fake_family, f"{prefix}.fake_family")
    list_file: Path | None = None
    if layout == "list":
        if not sec.get("list_file"):
            raise ConfigError(f"`{prefix}.list_file` is required when the layout is list.")
        lf = Path(str(sec["list_file"])).expanduser()
        list_file = lf if lf.is_absolute() else root / lf
        if not list_file.is_file():
            raise ConfigError(f"`{prefix}.list_file` {str(list_file)!r} does not exist.")
    columns_raw = sec.get("columns") or {}
    if not isinstance(columns_raw, Mapping) or set(columns_raw) - {"path", "family", "generator", "split"}:
        raise ConfigError(
            f"`{prefix}.columns` maps path/family/generator/split to the list file's column names. "
            f"Got {columns_raw!r} instead."
        )
    return DatasetConfig(
        name=name,
        layout=layout,
        root=root,
        list_file=list_file,
        families=families,
        fake_family=fake_family,
        columns={str(k): str(v) for k, v in columns_raw.items()},
        split=_parse_split(name, sec.get("split"), default_seed=default_seed, layout=layout),
    )
