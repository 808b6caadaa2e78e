"""Writing one detector's evaluation: metrics JSON, predictions Parquet, DVC plot data and PNG figures.

Files in ``out_dir`` (names fixed here; the DVC snippet refers to them):
- ``metrics.json``: `ternary_metrics` + detector/composition info (for ``dvc metrics show/diff``);
- ``predictions.parquet``: image_id, dataset, generator, family, split, p_real, p_gan, p_dm, predicted;
- ``confusion.csv``: one row per test image, ``actual,predicted`` class names (DVC ``confusion`` template);
- ``roc.csv``: ``fpr,tpr,threshold`` of the binary view (fake score ``1 - p_real``); the first point's
  threshold (+inf in scikit-learn) is written as 1.000001 so the file stays numeric;
- ``roc.png`` and ``confusion.png``: the same as figures (matplotlib, Agg backend).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.metrics import roc_curve

from pipeline.data.manifest import FAMILIES, FAMILY_INDEX
from pipeline.metrics.classification import confusion_counts, ternary_metrics

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["FILES", "write_evaluation"]

logger = logging.getLogger(__name__)

FILES = {
    "metrics": "metrics.json",
    "predictions": "predictions.parquet",
    "confusion": "confusion.csv",
    "roc": "roc.csv",
    "roc_png": "roc.png",
    "confusion_png": "confusion.png",
}


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/Inf -> None, numpy scalars -> python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _plot_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float | None, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=120)
    ax.plot(fpr, tpr, label=f"AUC {auc:.3f}" if auc is not None else "AUC n/a")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_confusion(counts: np.ndarray, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=120)
    ax.imshow(counts, cmap="Blues")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, str(int(counts[i, j])), ha="center", va="center")
    ax.set_xticks(range(len(FAMILIES)), FAMILIES)
    ax.set_yticks(range(len(FAMILIES)), FAMILIES)
    ax.set(xlabel="predicted", ylabel="actual", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_evaluation(
    probs: np.ndarray,
    labels: np.ndarray,
    meta: Mapping[str, np.ndarray],
    out_dir: str | Path,
    *,
    detector: str,
    seen_generators: set[str] | frozenset[str],
    info: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Compute and write every evaluation output of one detector on its test images.

    Args:
        probs (`np.ndarray`): `(N, 3)` probabilities (real, gan, dm).
        labels (`np.ndarray`): `(N,)` true class index.
        meta (`Mapping[str, np.ndarray]`): image_id, dataset, generator, family, split columns `(N,)`.
        out_dir (`str | Path`): output folder (created).
        detector (`str`): detector name (the params key).
        seen_generators (`set[str]`): generators of the training split (for ``mean_unseen``).
        info (`Mapping | None`): extra JSON-able entries for metrics.json (composition, recon MSE, ...).
        plots (`bool`): also write the PNG figures.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    metrics = ternary_metrics(probs, labels, meta["generator"], seen_generators=seen_generators)
    metrics = {"detector": detector, **dict(info or {}), **metrics}
    (out / FILES["metrics"]).write_text(json.dumps(_clean(metrics), indent=2, sort_keys=False))

    pred = probs.argmax(1)
    table = pa.table(
        {
            **{k: pa.array(np.asarray(meta[k]).astype(str)) for k in ("image_id", "dataset", "generator")},
            "family": pa.array(np.asarray(meta["family"]).astype(str)),
            "split": pa.array(np.asarray(meta["split"]).astype(str)),
            "p_real": pa.array(probs[:, FAMILY_INDEX["real"]], pa.float32()),
            "p_gan": pa.array(probs[:, FAMILY_INDEX["gan"]], pa.float32()),
            "p_dm": pa.array(probs[:, FAMILY_INDEX["dm"]], pa.float32()),
            "predicted": pa.array([FAMILIES[i] for i in pred]),
        }
    )
    pq.write_table(table, out / FILES["predictions"])

    with (out / FILES["confusion"]).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["actual", "predicted"])
        w.writerows((FAMILIES[a], FAMILIES[p]) for a, p in zip(labels, pred, strict=True))

    fake = labels != FAMILY_INDEX["real"]
    fpr = tpr = thr = np.array([], dtype=np.float64)
    with (out / FILES["roc"]).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fpr", "tpr", "threshold"])
        if fake.any() and (~fake).any():
            fpr, tpr, thr = roc_curve(fake, 1.0 - probs[:, FAMILY_INDEX["real"]])
            thr = np.where(np.isfinite(thr), thr, 1.000001)
            w.writerows((f"{a:.6f}", f"{b:.6f}", f"{c:.6f}") for a, b, c in zip(fpr, tpr, thr, strict=True))
    if plots:
        _plot_roc(fpr, tpr, metrics["binary"]["roc_auc"], f"{detector}: real vs fake", out / FILES["roc_png"])
        _plot_confusion(confusion_counts(labels, pred), detector, out / FILES["confusion_png"])
    logger.info(
        "evaluated <detector=%s> <n=%d> <mean_acc=%s> <mean_ap=%s>",
        detector, labels.size, metrics["mean"]["acc"], metrics["mean"]["ap"],
    )  # fmt: skip
    return metrics
