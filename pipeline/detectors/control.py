"""The trivial control: multinomial logistic regression on a dozen per-image statistics.

Why it exists (``DEMO-SCIENCE.md``): on small, home-made fakes a detector can win by learning "low contrast"
or "JPEG-ness" instead of "made by a DM". The control sees only such statistics of the cached input image
(never a reconstruction), is trained on ``train``, selected on ``val`` and evaluated exactly like the CNNs.
If it comes close to the detectors, the data are confounded and the detector comparison means little.

Features (pixels scaled to [0, 1]; grey = ITU-R 601 luma):
1-6. per-channel mean and standard deviation (brightness/contrast/colour cast);
7. ``log`` of the mean squared 4-neighbour Laplacian of grey (high-frequency energy);
8. the same divided by grey's variance (sharpness independent of contrast);
9-10. JPEG 8x8-grid blockiness, horizontal and vertical: mean absolute neighbour difference across
   columns/rows ``8k-1 | 8k`` divided by that elsewhere (1 = no grid; JPEG raises it);
11-12. mean and standard deviation of HSV saturation.

Model: standardisation (train mean/std) + scikit-learn ``LogisticRegression`` (lbfgs, multinomial,
``class_weight="balanced"``); ``C`` is picked from `C_GRID` by balanced accuracy on ``val`` (ties: lower val
log-loss). The fitted numbers are stored as JSON (no pickle) and `predict_control` recomputes the softmax.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, log_loss

from pipeline.data.manifest import FAMILIES
from pipeline.errors import InputDataError, ModelLoadError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipeline.detectors.data import SplitData

__all__ = [
    "CONTROL_KIND",
    "C_GRID",
    "FEATURE_NAMES",
    "ControlModel",
    "image_features",
    "load_control",
    "predict_control",
    "train_control",
]

logger = logging.getLogger(__name__)

CONTROL_KIND = "control"
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
FEATURE_NAMES: tuple[str, ...] = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "log_laplacian_energy",
    "laplacian_energy_over_var",
    "blockiness_h",
    "blockiness_v",
    "saturation_mean",
    "saturation_std",
)
_EPS = 1e-8


def _blockiness(grey: np.ndarray, axis: int) -> np.ndarray:
    """Per image: mean |neighbour difference| across 8-px grid lines / elsewhere along ``axis`` (-1 or -2)."""
    d = np.abs(np.diff(grey, axis=axis))  # position j = difference between pixels j and j+1
    n = d.shape[axis]
    on_grid = (np.arange(n) % 8) == 7
    if not on_grid.any() or on_grid.all():
        return np.ones(grey.shape[0], dtype=np.float64)
    take_on = np.compress(on_grid, d, axis=axis).mean(axis=(1, 2))
    take_off = np.compress(~on_grid, d, axis=axis).mean(axis=(1, 2))
    return (take_on + _EPS) / (take_off + _EPS)


def image_features(images: np.ndarray, *, batch: int = 1024) -> np.ndarray:
    """Feature matrix float64 `(N, len(FEATURE_NAMES))` of uint8 `(N, 3, H, W)` images."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise InputDataError(f"image_features needs uint8 (N, 3, H, W); got {images.dtype} {images.shape}.")
    out = np.zeros((images.shape[0], len(FEATURE_NAMES)), dtype=np.float64)
    for s in range(0, images.shape[0], batch):
        x = images[s : s + batch].astype(np.float64) / 255.0
        grey = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
        lap = (
            -4 * grey[:, 1:-1, 1:-1]
            + grey[:, :-2, 1:-1]
            + grey[:, 2:, 1:-1]
            + grey[:, 1:-1, :-2]
            + grey[:, 1:-1, 2:]
        )
        lap_energy = (lap**2).mean(axis=(1, 2))
        mx, mn = x.max(axis=1), x.min(axis=1)
        sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, _EPS), 0.0)
        out[s : s + batch] = np.column_stack(
            [
                x.mean(axis=(2, 3)),
                x.std(axis=(2, 3)),
                np.log(lap_energy + _EPS),
                lap_energy / (grey.var(axis=(1, 2)) + _EPS),
                _blockiness(grey, -1),
                _blockiness(grey, -2),
                sat.mean(axis=(1, 2)),
                sat.std(axis=(1, 2)),
            ]
        )
    return out


@dataclass(frozen=True)
class ControlModel:
    """A fitted control: standardisation + multinomial logistic regression, as plain numbers."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (3, F)
    intercept: np.ndarray  # (3,)
    c: float
    feature_names: tuple[str, ...] = FEATURE_NAMES
    selection: list[dict[str, float]] = field(default_factory=list)

    def to_config(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "C": self.c,
            "classes": list(FAMILIES),
            "selection": self.selection,
        }


def predict_control(model: ControlModel, images: np.ndarray) -> np.ndarray:
    """Class probabilities float64 `(N, 3)` (real, gan, dm) for uint8 images."""
    z = (image_features(images) - model.mean) / model.scale
    logits = z @ model.coef.T + model.intercept
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def train_control(
    data: Mapping[str, SplitData], out_dir: str | Path, *, seed: int = 0, max_iter: int = 2000
) -> ControlModel:
    """Fit on ``data["train"]``, pick ``C`` on ``data["val"]``, write ``config.json`` + ``train.json``.

    Raises:
        InputDataError: a split is missing/empty or a class has no training images.
    """
    t0 = time.perf_counter()
    for split in ("train", "val"):
        if split not in data or len(data[split]) == 0:
            raise InputDataError(f"control: the {split!r} split is empty or missing.")
    train, val = data["train"], data["val"]
    missing = [FAMILIES[i] for i in range(len(FAMILIES)) if not (train.labels == i).any()]
    if missing:
        raise InputDataError(
            f"control: no training images of {missing} (train counts {train.class_counts()})."
        )
    f_train, f_val = image_features(train.arrays["image"]), image_features(val.arrays["image"])
    mean = f_train.mean(axis=0)
    scale = f_train.std(axis=0)
    scale[scale < _EPS] = 1.0
    z_train, z_val = (f_train - mean) / scale, (f_val - mean) / scale
    best: tuple[float, float, LogisticRegression, float] | None = None
    selection = []
    for c in C_GRID:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter, random_state=seed)
        clf.fit(z_train, train.labels)
        proba = clf.predict_proba(z_val)
        full = np.zeros((len(val), len(FAMILIES)))
        full[:, clf.classes_] = proba
        bacc = float(balanced_accuracy_score(val.labels, full.argmax(1)))
        ll = float(log_loss(val.labels, np.clip(full, 1e-12, 1), labels=list(range(len(FAMILIES)))))
        selection.append({"C": c, "val_balanced_acc": bacc, "val_log_loss": ll})
        logger.info("control <C=%g> <val_bacc=%.4f> <val_logloss=%.4f>", c, bacc, ll)
        if best is None or (bacc, -ll) > (best[0], -best[1]):
            best = (bacc, ll, clf, c)
    assert best is not None
    clf = best[2]
    model = ControlModel(
        mean=mean, scale=scale, coef=clf.coef_, intercept=clf.intercept_, c=best[3], selection=selection
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(
        json.dumps({"kind": CONTROL_KIND, "config": model.to_config()}, indent=2, sort_keys=True)
    )
    report = {
        "composition": CONTROL_KIND,
        "C": best[3],
        "best_val_acc": best[0],
        "best_val_loss": best[1],
        "train_counts": train.class_counts(),
        "val_counts": val.class_counts(),
        "selection": selection,
        "seconds": time.perf_counter() - t0,
    }
    (out / "train.json").write_text(json.dumps(report, indent=2))
    return model


def load_control(folder: str | Path) -> ControlModel:
    """Read a control written by `train_control`."""
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise ModelLoadError(f"control folder {str(folder)!r} has no config.json.")
    meta = json.loads(p.read_text())
    if meta.get("kind") != CONTROL_KIND:
        raise ModelLoadError(f"{str(p)!r} holds a {meta.get('kind')!r} model, expected {CONTROL_KIND!r}.")
    cfg = meta["config"]
    if tuple(cfg["feature_names"]) != FEATURE_NAMES:
        raise ModelLoadError(
            f"{str(p)!r} was fitted on features {cfg['feature_names']}, not {FEATURE_NAMES}."
        )
    return ControlModel(
        mean=np.asarray(cfg["mean"]),
        scale=np.asarray(cfg["scale"]),
        coef=np.asarray(cfg["coef"]),
        intercept=np.asarray(cfg["intercept"]),
        c=float(cfg["C"]),
        selection=cfg.get("selection", []),
    )
