"""Detector training from real tiny Zarr stores: learns, is deterministic, stops early, round-trips."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.detectors.config import parse_detector_spec
from pipeline.detectors.data import load_detector_data
from pipeline.detectors.inputs import get_composition
from pipeline.detectors.run import evaluate_from_cache, train_from_cache
from pipeline.detectors.synthetic import SyntheticCache, make_synthetic_cache
from pipeline.detectors.train import DetectorTrainConfig, load_detector, predict_proba, train_detector
from pipeline.errors import CacheCorruptError, ConfigError, InputDataError

CFG = DetectorTrainConfig(
    backbone="resnet18", stem="small", base_width=8, epochs=2, batch_size=8, lr=3e-3, seed=0, patience=3
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCache:
    return make_synthetic_cache(tmp_path_factory.mktemp("syn"), n_per_cell=4, res=16)


@pytest.fixture(scope="module")
def data(cache: SyntheticCache) -> dict:
    fields = ["image", "ddim.recon", "gan.recon", "ddim.residual", "gan.residual"]
    stores = {"ddim": cache.ddim, "gan": cache.gan}
    return load_detector_data(cache.manifest, cache.images, stores, fields, ("train", "val", "test"))


def test_data_join_follows_cache_index(cache: SyntheticCache, data: dict) -> None:
    assert {k: len(v) for k, v in data.items()} == {
        "train": 24,
        "val": 12,
        "test": 24,
    }  # rejected row dropped
    train = data["train"]
    # synthetic classes are brightness levels: the join must pair each label with its own pixels
    means = [train.arrays["image"][train.labels == c].mean() for c in range(3)]
    assert means[0] < means[1] < means[2]
    assert set(data["test"].meta["generator"]) == {"real", "stylegan", "stylegan2", "adm", "ldm"}


def test_training_beats_chance_and_is_deterministic(data: dict, tmp_path: Path) -> None:
    comp = get_composition("multirecon")
    r1 = train_detector(comp, CFG, data, tmp_path / "a", live_dir=tmp_path / "a" / "live")
    r2 = train_detector(comp, CFG, data, tmp_path / "b")
    m1, _ = load_detector(tmp_path / "a")
    m2, _ = load_detector(tmp_path / "b")
    for (k, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(v1, v2), k
    assert r1.history == [
        replace(h, seconds=h2.seconds) for h, h2 in zip(r2.history, r1.history, strict=True)
    ]
    probs = predict_proba(m1, comp, data["test"])
    assert (probs.argmax(1) == data["test"].labels).mean() > 0.5  # chance = 1/3
    curves = json.loads((tmp_path / "a" / "live" / "metrics.json").read_text())
    assert {"train", "val"} <= set(curves)
    assert (tmp_path / "a" / "live" / "plots" / "metrics" / "val" / "acc.tsv").is_file()


def test_checkpoint_round_trip_identical_predictions(data: dict, tmp_path: Path) -> None:
    comp = get_composition("rgb_ddim_recon")
    cfg = replace(CFG, epochs=1)
    train_detector(comp, cfg, data, tmp_path)
    model, comp2 = load_detector(tmp_path)
    assert comp2 == comp
    p1 = predict_proba(model, comp2, data["val"])
    model2, _ = load_detector(tmp_path)
    assert np.array_equal(p1, predict_proba(model2, comp2, data["val"]))
    assert np.allclose(p1.sum(1), 1.0)


def test_early_stopping_triggers(data: dict, tmp_path: Path) -> None:
    # a frozen model (lr ~ 0) soon stops improving val accuracy: training must stop `patience` epochs after
    # the best one and keep that epoch's weights
    cfg = replace(CFG, lr=1e-12, epochs=8, patience=2, monitor="val_acc", class_balance="sampler")
    report = train_detector(get_composition("gan_residual"), cfg, data, tmp_path)
    assert report.stopped_early and report.epochs_run == report.best_epoch + 2 < 8
    best = max(h.val_acc for h in report.history)
    assert report.history[report.best_epoch - 1].val_acc == best == report.best_val_acc
    saved = json.loads((tmp_path / "config.json").read_text())["config"]
    assert saved["best_epoch"] == report.best_epoch


def test_missing_class_and_recon_are_reported(data: dict, cache: SyntheticCache, tmp_path: Path) -> None:
    train = data["train"]
    no_dm = train.take(np.flatnonzero(train.labels != 2))
    with pytest.raises(InputDataError, match="dm"):
        train_detector(get_composition("multirecon"), CFG, {"train": no_dm, "val": data["val"]}, tmp_path)
    with pytest.raises(ConfigError, match="--gan"):
        train_from_cache(
            "x", "multirecon", CFG, manifest=cache.manifest, input_store=cache.images,
            recon_stores={"ddim": cache.ddim}, out_dir=tmp_path, live_dir=None,
        )  # fmt: skip


def test_store_from_another_manifest_is_refused(cache: SyntheticCache, tmp_path: Path) -> None:
    other = make_synthetic_cache(tmp_path / "other", n_per_cell=4, res=16, seed=1)
    with pytest.raises(CacheCorruptError, match="another manifest"):
        load_detector_data(cache.manifest, other.images, None, ["image"])


def test_stage_functions_end_to_end(cache: SyntheticCache, tmp_path: Path) -> None:
    shared = {k: getattr(CFG, k) for k in ("backbone", "stem", "base_width", "batch_size", "lr")}
    spec = parse_detector_spec("dire", {"composition": "dire", "epochs": 1}, shared, seed=0)
    assert spec.train.epochs == 1 and spec.train.base_width == 8
    stores = {"ddim": cache.ddim, "gan": cache.gan}
    kw = {"manifest": cache.manifest, "input_store": cache.images, "recon_stores": stores}
    train_from_cache("dire", spec.composition, spec.train, out_dir=tmp_path / "m", live_dir=None, **kw)
    m = evaluate_from_cache("dire", model_dir=tmp_path / "m", out_dir=tmp_path / "e", plots=False, **kw)
    assert m["composition"] == "dire" and m["n"] == 24
    assert set(m["mean_unseen"]["generators"]) == {"ldm", "stylegan2"}
    assert m["recon_mse"]["gan"]["by_family"]["gan"]["mse"] < m["recon_mse"]["gan"]["by_family"]["dm"]["mse"]
    for f in ("metrics.json", "predictions.parquet", "confusion.csv", "roc.csv"):
        assert (tmp_path / "e" / f).is_file()
    with pytest.raises(ConfigError, match="composition"):
        parse_detector_spec("bad", {"composition": "rgb"}, {}, seed=0)
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_detector_spec("bad", {"composition": "dire", "epoch": 3}, {}, seed=0)


def test_detector_seed_overrides_base_seed_for_detectors_only() -> None:
    """`train.seed` (or a detector's own `seed`) replaces base.seed; null keeps it; junk is named."""
    dire = {"composition": "dire"}
    assert parse_detector_spec("dire", dire, {"seed": None}, seed=7).train.seed == 7
    assert parse_detector_spec("dire", dire, {"seed": 1}, seed=7).train.seed == 1
    assert parse_detector_spec("dire", {**dire, "seed": 3}, {"seed": 1}, seed=7).train.seed == 3
    with pytest.raises(ConfigError, match=r"`train\.seed` / `detectors\.dire\.seed` must be"):
        parse_detector_spec("dire", dire, {"seed": "one"}, seed=7)
    with pytest.raises(ConfigError, match="must be"):
        parse_detector_spec("dire", dire, {"seed": True}, seed=7)
