"""Detection metrics of a ternary (real / GAN / DM) detector on the test split, as in Table I of the paper.

Definitions (the README copies this block):

- **Subsets.** ``real`` = every real test image (whatever its source); one subset per generator of the fake
  test images (the manifest's ``generator``), whose true class is the generator's family (``gan`` or ``dm``).
- **ACC of a subset** = share of the subset's images whose arg-max class is their true class (so a GAN image
  called "DM" is wrong, as in the paper's ternary task).
- **AP of a generator subset** = average precision (scikit-learn, step-wise, no interpolation) of the score
  ``p(true class)``, one-vs-rest, over the subset's images (positives) together with all real test images
  (negatives). This is "is this image from that generator's family rather than real?", ranking by the
  probability the detector gives the true family.
- **AP of the real subset** = average precision of ``p(real)`` with the real test images as positives and
  all fake test images as negatives. Table I reports no AP for Real, so it is shown but **not** averaged.
- **Avg** (Table I): mean ACC over all subsets including ``real``; mean AP over the generator subsets only.
- **Unseen**: a generator subset is unseen when that generator has no image in the training split;
  ``mean_unseen`` averages ACC and AP over unseen generator subsets only (the paper's generalisation claim).
- **Binary view** (GAN + DM = fake, positive class): fake score ``1 - p(real)``; decision = arg-max of the
  ternary head (fake iff the arg-max is ``gan`` or ``dm``). ACC = share of correct decisions; FPR = reals
  decided fake / reals; FNR = fakes decided real / fakes; AP and ROC-AUC of the fake score (scikit-learn);
  EER = the error rate where FPR equals FNR (= 1 - TPR) along the ROC curve, linearly interpolated between
  the two ROC points where ``FPR - FNR`` changes sign.
Values are fractions in [0, 1] in JSON (tables print percentages); a metric that cannot be computed (e.g. AP
with no negatives) is ``null``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from pipeline.data.manifest import FAMILIES, FAMILY_INDEX
from pipeline.errors import InputDataError

__all__ = [
    "REAL_SUBSET",
    "binary_metrics",
    "confusion_counts",
    "equal_error_rate",
    "ternary_metrics",
]

REAL_SUBSET = "real"


def _ap(y: np.ndarray, score: np.ndarray) -> float | None:
    if y.size == 0 or y.all() or not y.any():
        return None
    return float(average_precision_score(y, score))


def equal_error_rate(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """EER of scores ``score`` for binary labels ``y_true`` (1 = positive); None if one class is absent."""
    y = np.asarray(y_true).astype(bool)
    if y.all() or not y.any():
        return None
    fpr, tpr, _ = roc_curve(y, score)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # goes from <= 0 (threshold +inf: fpr 0, fnr 1) to >= 0
    i = int(np.flatnonzero(diff >= 0)[0])
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    # linear interpolation between ROC points i-1 and i, where diff changes sign
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def binary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Real-vs-fake metrics (see module docstring) of ternary ``probs`` `(N, 3)` and labels `(N,)`."""
    fake = labels != FAMILY_INDEX["real"]
    score = 1.0 - probs[:, FAMILY_INDEX["real"]]
    decided_fake = probs.argmax(1) != FAMILY_INDEX["real"]
    n_real, n_fake = int((~fake).sum()), int(fake.sum())
    both = n_real > 0 and n_fake > 0
    return {
        "acc": float((decided_fake == fake).mean()) if labels.size else None,
        "ap": _ap(fake, score),
        "roc_auc": float(roc_auc_score(fake, score)) if both else None,
        "eer": equal_error_rate(fake, score),
        "fpr": float(decided_fake[~fake].mean()) if n_real else None,
        "fnr": float((~decided_fake[fake]).mean()) if n_fake else None,
        "n_real": n_real,
        "n_fake": n_fake,
    }


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def ternary_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    generators: np.ndarray,
    *,
    seen_generators: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Per-subset ACC/AP, their means (all and unseen) and the binary view; see the module docstring.

    Args:
        probs (`np.ndarray`): `(N, 3)` class probabilities (real, gan, dm) of the test images.
        labels (`np.ndarray`): `(N,)` true class index.
        generators (`np.ndarray`): `(N,)` generator names (ignored for real images).
        seen_generators (`set[str]`): generators present in the training split.

    Returns:
        `dict` with ``subsets`` (name -> family, n, acc, ap, seen), ``mean``, ``mean_unseen``, ``binary``,
        ``overall_acc``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    generators = np.asarray(generators).astype(str)
    if probs.ndim != 2 or probs.shape != (labels.size, len(FAMILIES)) or generators.shape != labels.shape:
        raise InputDataError(
            f"ternary_metrics needs probs (N, 3), labels (N,), generators (N,); got {probs.shape},"
            f" {labels.shape}, {generators.shape}."
        )
    pred = probs.argmax(1)
    real = labels == FAMILY_INDEX["real"]
    subsets: dict[str, dict[str, Any]] = {}
    if real.any():
        subsets[REAL_SUBSET] = {
            "family": "real",
            "n": int(real.sum()),
            "acc": float((pred[real] == labels[real]).mean()),
            "ap": _ap(real, probs[:, FAMILY_INDEX["real"]]),
            "seen": True,
        }
    for gen in sorted(set(generators[~real])):
        sel = (generators == gen) & ~real
        fams = np.unique(labels[sel])
        if fams.size != 1:
            raise InputDataError(f"generator {gen!r} has images of several families {fams.tolist()} in test.")
        c = int(fams[0])
        pool = sel | real
        subsets[gen] = {
            "family": FAMILIES[c],
            "n": int(sel.sum()),
            "acc": float((pred[sel] == c).mean()),
            "ap": _ap(sel[pool], probs[pool, c]),
            "seen": gen in seen_generators,
        }
    gens = [k for k in subsets if k != REAL_SUBSET]
    unseen = [k for k in gens if not subsets[k]["seen"]]
    return {
        "subsets": subsets,
        "mean": {
            "acc": _mean([s["acc"] for s in subsets.values()]),
            "ap": _mean([subsets[k]["ap"] for k in gens]),
        },
        "mean_unseen": {
            "acc": _mean([subsets[k]["acc"] for k in unseen]),
            "ap": _mean([subsets[k]["ap"] for k in unseen]),
            "generators": unseen,
        },
        "binary": binary_metrics(probs, labels),
        "overall_acc": float((pred == labels).mean()) if labels.size else None,
        "n": int(labels.size),
    }


def confusion_counts(labels: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """3x3 counts, rows = actual class, columns = predicted class (real, gan, dm)."""
    k = len(FAMILIES)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
