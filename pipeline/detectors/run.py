"""Cache-to-result entry points behind ``stages.train_detector`` and ``stages.evaluate``.

One function per stage: both read only the manifest and the Zarr caches (`load_detector_data`), dispatch on
the composition (a CNN, or the trivial control) and write the stage's outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.data.manifest import FAMILIES, FAMILY_INDEX
from pipeline.detectors.control import CONTROL_KIND, load_control, predict_control, train_control
from pipeline.detectors.data import load_detector_data, manifest_rows
from pipeline.detectors.inputs import CONTROL, CNNSpotAugment, Composition, get_composition
from pipeline.detectors.train import (
    CHECKPOINT_KIND,
    DetectorTrainConfig,
    load_detector,
    predict_proba,
    train_detector,
)
from pipeline.errors import ConfigError, ModelLoadError
from pipeline.metrics.report import write_evaluation

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

__all__ = ["evaluate_from_cache", "recon_mse_summary", "train_from_cache"]

logger = logging.getLogger(__name__)


def _check_recons(composition: Composition, recon_stores: Mapping[str, Path]) -> None:
    missing = [r for r in composition.recons if r not in recon_stores]
    if missing:
        raise ConfigError(
            f"composition {composition.name!r} reads {list(composition.recons)} reconstructions; pass"
            f" {', '.join('--' + m for m in missing)} with the store path(s)."
        )


def train_from_cache(
    detector: str,
    composition_name: str,
    config: DetectorTrainConfig,
    *,
    manifest: Path,
    input_store: Path,
    recon_stores: Mapping[str, Path],
    out_dir: Path,
    live_dir: Path | None,
    device: torch.device | str = "cpu",
    cnnspot: CNNSpotAugment | None = None,
) -> dict[str, Any]:
    """Train detector ``detector`` (a composition or the control) from the caches; returns its report dict."""
    if composition_name == CONTROL:
        data = load_detector_data(manifest, input_store, None, ["image"], ("train", "val"))
        if live_dir is not None:
            Path(live_dir).mkdir(parents=True, exist_ok=True)
        model = train_control(data, out_dir, seed=config.seed)
        report = json.loads((Path(out_dir) / "train.json").read_text())
        logger.info("trained control <detector=%s> <C=%g>", detector, model.c)
        return report
    composition = get_composition(composition_name, cnnspot=cnnspot)
    _check_recons(composition, recon_stores)
    stores = {r: recon_stores[r] for r in composition.recons}
    data = load_detector_data(manifest, input_store, stores, composition.fields, ("train", "val"))
    report = train_detector(composition, config, data, out_dir, device=device, live_dir=live_dir)
    return report.to_dict()


def recon_mse_summary(
    manifest: Path, input_store: Path, recon_stores: Mapping[str, Path], split: str = "test"
) -> dict[str, Any]:
    """Reconstruction error of each store on ``split``, by family and by generator (III-A's premise).

    ``mse`` is the cached per-image mean squared residual in model units ([-1, 1] pixels). ``mse_norm``
    divides it by the image's own pixel variance (model units), the contrast check of DEMO-SCIENCE.md: a
    washed-out fake reconstructs "better" in raw MSE for reasons unrelated to the generator.
    """
    if not recon_stores:
        return {}
    fields = ["image", *(f"{r}.mse" for r in sorted(recon_stores))]
    data = load_detector_data(manifest, input_store, dict(recon_stores), fields, (split,))[split]
    if len(data) == 0:
        return {}
    x = data.arrays["image"].astype(np.float64) / 127.5 - 1.0
    var = x.reshape(len(data), -1).var(axis=1) + 1e-8
    out: dict[str, Any] = {}
    for r in sorted(recon_stores):
        mse = np.asarray(data.arrays[f"{r}.mse"], dtype=np.float64)
        entry: dict[str, Any] = {"split": split, "by_family": {}, "by_generator": {}}
        for fam in FAMILIES:
            sel = data.labels == FAMILY_INDEX[fam]
            if sel.any():
                entry["by_family"][fam] = {
                    "n": int(sel.sum()),
                    "mse": float(mse[sel].mean()),
                    "mse_std": float(mse[sel].std()),
                    "mse_norm": float((mse[sel] / var[sel]).mean()),
                }
        for gen in sorted(set(data.meta["generator"])):
            sel = data.meta["generator"] == gen
            entry["by_generator"][gen] = {
                "family": str(data.meta["family"][sel][0]),
                "n": int(sel.sum()),
                "mse": float(mse[sel].mean()),
                "mse_norm": float((mse[sel] / var[sel]).mean()),
            }
        out[r] = entry
    return out


def evaluate_from_cache(
    detector: str,
    *,
    model_dir: Path,
    manifest: Path,
    input_store: Path,
    recon_stores: Mapping[str, Path],
    out_dir: Path,
    device: torch.device | str = "cpu",
    batch_size: int = 128,
    plots: bool = True,
) -> dict[str, Any]:
    """Predict the test split with the trained detector in ``model_dir`` and write every evaluation output.

    Recon stores that are passed but not read by the detector still feed ``recon_mse`` in metrics.json.
    """
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"detector folder {str(model_dir)!r} has no config.json (train it first).")
    kind = json.loads(cfg_path.read_text()).get("kind")
    if kind == CONTROL_KIND:
        control = load_control(model_dir)
        test = load_detector_data(manifest, input_store, None, ["image"], ("test",))["test"]
        probs = predict_control(control, test.arrays["image"])
        info: dict[str, Any] = {"composition": CONTROL, "kind": CONTROL_KIND, "C": control.c}
    elif kind == CHECKPOINT_KIND:
        model, composition = load_detector(model_dir, device=device)
        _check_recons(composition, recon_stores)
        stores = {r: recon_stores[r] for r in composition.recons}
        test = load_detector_data(manifest, input_store, stores, composition.fields, ("test",))["test"]
        probs = predict_proba(model, composition, test, batch_size=batch_size, device=device)
        meta = json.loads(cfg_path.read_text())["config"]
        info = {
            "composition": composition.name,
            "kind": CHECKPOINT_KIND,
            "architecture": meta["architecture"],
            "best_epoch": meta.get("best_epoch"),
        }
    else:
        raise ModelLoadError(f"{str(cfg_path)!r} holds a {kind!r} model, expected detector or control.")
    rows = manifest_rows(manifest)
    seen = set(rows["generator"][(rows["split"] == "train") & (rows["family"] != "real")])
    info["recon_mse"] = recon_mse_summary(manifest, input_store, recon_stores)
    return write_evaluation(
        probs,
        test.labels,
        test.meta,
        out_dir,
        detector=detector,
        seen_generators=seen,
        info=info,
        plots=plots,
    )
