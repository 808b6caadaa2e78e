"""Split assignment: ratio, protocol and column modes, determinism, stability."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from pipeline.data import reasons
from pipeline.data.config import SplitConfig
from pipeline.data.splits import SplitItem, assign_splits, protocol_reject, ratio_counts


def _items(generator: str, n: int, tag: str = "") -> list[SplitItem]:
    return [
        SplitItem(image_id=hashlib.sha256(f"{generator}{tag}{i}".encode()).hexdigest(), generator=generator)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("n", "expected"),
    [(10, (8, 1, 1)), (1, (1, 0, 0)), (3, (3, 0, 0)), (7, (5, 1, 1)), (0, (0, 0, 0))],
)
def test_ratio_counts_largest_remainder(n: int, expected: tuple[int, int, int]) -> None:
    counts = ratio_counts(n, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert (counts["train"], counts["val"], counts["test"]) == expected
    assert sum(counts.values()) == n


def test_ratio_mode_is_stratified_and_deterministic() -> None:
    items = _items("real", 50) + _items("sg", 20)
    cfg = SplitConfig(mode="ratio", seed=3, ratios={"train": 0.6, "val": 0.2, "test": 0.2})
    splits = assign_splits(items, cfg)
    per = Counter((it.generator, s) for it, s in zip(items, splits, strict=True))
    assert per == {
        ("real", "train"): 30,
        ("real", "val"): 10,
        ("real", "test"): 10,
        ("sg", "train"): 12,
        ("sg", "val"): 4,
        ("sg", "test"): 4,
    }
    assert assign_splits(items, cfg) == splits
    # Order of the input does not matter: the split is a function of content and seed.
    shuffled = items[::-1]
    assert dict(zip((i.image_id for i in shuffled), assign_splits(shuffled, cfg), strict=True)) == dict(
        zip((i.image_id for i in items), splits, strict=True)
    )
    other_seed = assign_splits(items, SplitConfig(mode="ratio", seed=4, ratios=cfg.ratios))
    assert other_seed != splits and Counter(other_seed) == Counter(splits)


def test_adding_an_image_moves_at_most_one_per_boundary() -> None:
    items = _items("real", 40)
    cfg = SplitConfig(mode="ratio", seed=0, ratios={"train": 0.5, "val": 0.25, "test": 0.25})
    before = dict(zip((i.image_id for i in items), assign_splits(items, cfg), strict=True))
    more = [*items, *_items("real", 1, tag="new")]
    after = dict(zip((i.image_id for i in more), assign_splits(more, cfg), strict=True))
    moved = [k for k in before if before[k] != after[k]]
    assert len(moved) <= 2  # at most one image per boundary (train|val, val|test)


def test_protocol_mode_holds_out_test_generators() -> None:
    cfg = SplitConfig(
        mode="protocol",
        seed=0,
        ratios={"train": 0.8, "val": 0.1, "test": 0.1},
        train_generators=("real", "stylegan", "adm"),
        test_generators=("stylegan2", "vqgan", "iddpm", "ldm"),
    )
    items = (
        _items("real", 20)
        + _items("stylegan", 10)
        + _items("adm", 10)
        + _items("ldm", 5)
        + _items("vqgan", 5)
    )
    splits = assign_splits(items, cfg)
    per = Counter((it.generator, s) for it, s in zip(items, splits, strict=True))
    assert per[("ldm", "test")] == 5 and per[("vqgan", "test")] == 5
    assert per[("real", "train")] == 16 and per[("real", "val")] == 2 and per[("real", "test")] == 2
    assert per[("adm", "train")] == 8 and per[("stylegan", "val")] == 1
    assert protocol_reject("ldm", cfg, "asfd") == ""
    reason = protocol_reject("biggan", cfg, "asfd")
    assert reason.startswith(reasons.NOT_IN_PROTOCOL) and "'biggan'" in reason
    assert "`datasets.asfd.split.train_generators`" in reason
    assert protocol_reject("biggan", SplitConfig(mode="ratio"), "asfd") == ""


def test_column_mode_keeps_the_list_split() -> None:
    items = [
        SplitItem(image_id=str(i), generator="g", split=s) for i, s in enumerate(["test", "train", "val"])
    ]
    assert assign_splits(items, SplitConfig(mode="column")) == ["test", "train", "val"]
