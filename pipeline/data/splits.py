"""Deterministic train/val/test assignment.

- ``column``: the list file's ``split`` value.
- ``ratio``: each generator is split on its own by ``ratios`` (stratified), so every split sees every
  generator in proportion.
- ``protocol`` (the paper's ASFD protocol): ``train_generators`` (real, ADM, StyleGAN) split by ``ratios``;
  ``test_generators`` (StyleGAN2, VQGAN, IDDPM, LDM) go entirely to test; any other generator is rejected
  before decoding.

Within a generator images are ordered by ``sha256(f"{seed}:{image_id}")`` and cut at counts from the
largest-remainder rounding of ``n * ratio``: the split depends on content and seed only (renaming or
reordering files changes nothing; adding a file moves at most one image per split boundary). Exact
duplicates were already reduced to one row, so the same content can never sit in two splits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.data import reasons
from pipeline.data.manifest import SPLITS

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pipeline.data.config import SplitConfig

__all__ = ["SplitItem", "assign_splits", "protocol_reject", "ratio_counts"]


@dataclass(frozen=True, kw_only=True)
class SplitItem:
    """What the split decision looks at for one accepted image."""

    image_id: str
    generator: str
    split: str = ""


def protocol_reject(generator: str, cfg: SplitConfig, dataset: str) -> str:
    """The rejection reason of a generator outside the protocol, or "" (always "" outside protocol mode)."""
    if cfg.mode != "protocol" or generator in cfg.train_generators or generator in cfg.test_generators:
        return ""
    detail = (
        f"generator {generator!r} is in neither `datasets.{dataset}.split.train_generators` "
        f"nor `datasets.{dataset}.split.test_generators`"
    )
    return reasons.with_detail(reasons.NOT_IN_PROTOCOL, detail)


def ratio_counts(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Split ``n`` items by ``ratios`` with largest-remainder rounding (ties go to the earlier split)."""
    exact = [n * float(ratios.get(s, 0.0)) for s in SPLITS]
    counts = [int(x) for x in exact]
    order = sorted(range(len(SPLITS)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return dict(zip(SPLITS, counts, strict=True))


def _order_key(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def _split_group(ids: list[str], ratios: Mapping[str, float], seed: int) -> dict[str, str]:
    ordered = sorted(ids, key=lambda i: (_order_key(seed, i), i))
    counts = ratio_counts(len(ordered), ratios)
    out: dict[str, str] = {}
    start = 0
    for split in SPLITS:
        for image_id in ordered[start : start + counts[split]]:
            out[image_id] = split
        start += counts[split]
    return out


def assign_splits(items: Sequence[SplitItem], cfg: SplitConfig) -> list[str]:
    """The split of each item, in input order (image ids must be unique)."""
    if cfg.mode == "column":
        return [item.split for item in items]
    by_generator: dict[str, list[str]] = defaultdict(list)
    fixed: dict[str, str] = {}
    for item in items:
        if cfg.mode == "protocol" and item.generator in cfg.test_generators:
            fixed[item.image_id] = "test"
        else:
            by_generator[item.generator].append(item.image_id)
    for ids in by_generator.values():
        fixed.update(_split_group(ids, cfg.ratios, cfg.seed))
    return [fixed[item.image_id] for item in items]
