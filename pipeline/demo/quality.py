"""Is a demo generator good enough to mean something? Pixel statistics and a memorisation check.

DEMO-SCIENCE.md measured that an undertrained DM makes washed-out faces that any detector separates
by contrast alone. So every generator's samples are compared with real faces on the statistics a
trivial classifier would use (`pipeline.demo.statistics`: mean, std, high-frequency energy, colourfulness,
colour cast) plus the spread of the fakes' hues around the real faces' hue, within a stated tolerance, and
checked not to be copies of training faces (nearest-neighbour distances). Beside the gaps of the means, the
report gives each statistic's AUC as a one-number real-vs-fake classifier: how far a detector could get on
that statistic alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pipeline.demo.statistics import (
    COLOUR_STATISTICS,
    GATE_STATISTICS,
    GREY_COLOURFULNESS,
    gated_statistics,
    image_statistics,
    relative_gaps,
    summary_statistics,
)

__all__ = [
    "CAST_SPREAD",
    "COLOUR_STATISTICS",
    "GATE_STATISTICS",
    "REPORT_STATISTICS",
    "QualityReport",
    "cast_spread",
    "image_statistics",
    "nearest_neighbour_distances",
    "quality_report",
    "relative_gaps",
    "single_statistic_auc",
    "summary_statistics",
]

CAST_SPREAD = "cast_spread"
# The gate's statistics: the per-image ones plus the hue spread, which needs the real faces as its reference
# (so training logs do not carry it).
REPORT_STATISTICS = (*GATE_STATISTICS, CAST_SPREAD)
_COLOUR_KEYS = (*COLOUR_STATISTICS, CAST_SPREAD)


def cast_spread(stats: dict[str, np.ndarray], hue_rg: float, hue_yb: float) -> np.ndarray:
    """Each image's distance from a reference hue: ``sqrt((cast_rg - hue_rg)^2 + (cast_yb - hue_yb)^2)``.

    The cast statistics compare dataset means, so cyan faces and pink faces whose average is skin-coloured
    pass them; their distance from the real faces' mean hue does not average out.
    """
    return np.sqrt((stats["cast_rg"] - hue_rg) ** 2 + (stats["cast_yb"] - hue_yb) ** 2)


def single_statistic_auc(fake: np.ndarray, real: np.ndarray) -> float:
    """Separability of two samples of one statistic: ``max(AUC, 1 - AUC)``. 0.5 = the statistic tells
    nothing, 1.0 = a threshold on it separates fakes from reals perfectly."""
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(np.r_[np.ones(len(fake)), np.zeros(len(real))], np.r_[fake, real])
    return float(max(auc, 1.0 - auc))


def nearest_neighbour_distances(queries: np.ndarray, references: np.ndarray, batch: int = 256) -> np.ndarray:
    """RMS pixel distance (on [0, 1]) from each query image to its nearest reference image."""
    q = queries.reshape(len(queries), -1).astype(np.float32) / 255.0
    r = references.reshape(len(references), -1).astype(np.float32) / 255.0
    r_sq = (r**2).sum(axis=1)
    out = np.empty(len(q), np.float32)
    for i in range(0, len(q), batch):
        qb = q[i : i + batch]
        d2 = (qb**2).sum(axis=1)[:, None] + r_sq[None, :] - 2.0 * qb @ r.T
        out[i : i + batch] = np.sqrt(np.maximum(d2.min(axis=1), 0.0) / q.shape[1])
    return out


@dataclass(frozen=True)
class QualityReport:
    """Sample statistics vs real faces. ``ok`` is the verdict the README and stage logs show."""

    n_fake: int
    n_real: int
    fake: dict[str, float]
    real: dict[str, float]
    relative_gap: dict[str, float]
    auc: dict[str, float]
    gated: list[str]
    tolerance: float
    stats_ok: bool
    grey_fakes: bool | None
    nn_fake_to_train: float
    nn_real_test_to_train: float
    copies: int
    ok: bool

    def to_dict(self) -> dict:
        return asdict(self)


def quality_report(
    fakes: np.ndarray,
    real_train: np.ndarray,
    real_test: np.ndarray,
    *,
    tolerance: float = 0.15,
    copy_threshold: float = 0.01,
) -> QualityReport:
    """Compare fakes with held-out reals; count near-copies of training faces.

    ``relative_gap[k]`` (`relative_gaps` of the means) for each of the `REPORT_STATISTICS` (`cast_spread`
    measured from the real test faces' mean hue, for fakes and reals alike); the statistics pass when every
    gap in ``gated`` is within ``tolerance`` (all of them, except the colour statistics when the real faces
    are grey, `GREY_COLOURFULNESS`: then the fakes must be grey too, ``grey_fakes``). ``auc[k]``
    (`single_statistic_auc`) is reported, not gated. A fake whose nearest training face is closer than
    ``copy_threshold`` RMS (on [0, 1]) counts as a copy.
    """
    per_fake, per_real = image_statistics(fakes), image_statistics(real_test)
    hue = float(per_real["cast_rg"].mean()), float(per_real["cast_yb"].mean())
    for per in (per_fake, per_real):
        per[CAST_SPREAD] = cast_spread(per, *hue)
    fake = {k: float(v.mean()) for k, v in per_fake.items()}
    real = {k: float(v.mean()) for k, v in per_real.items()}
    gap = relative_gaps(fake, real, colour=_COLOUR_KEYS)
    grey = real["colourfulness"] < GREY_COLOURFULNESS  # gaps then measured against the grey threshold
    gated = gated_statistics(REPORT_STATISTICS, real, colour=_COLOUR_KEYS)
    auc = {k: single_statistic_auc(per_fake[k], per_real[k]) for k in fake}
    nn_fake = nearest_neighbour_distances(fakes, real_train)
    nn_real = nearest_neighbour_distances(real_test, real_train)
    copies = int((nn_fake < copy_threshold).sum())
    # Grey reals: relative colour gaps mean little, but a generator that paints grey faces in colour fails
    # (the fresh-clone demo's iddpm: colourfulness 0.07 on grey LFW faces).
    grey_fakes = fake["colourfulness"] < GREY_COLOURFULNESS if grey else None
    stats_ok = all(gap[k] <= tolerance for k in gated) and grey_fakes is not False
    return QualityReport(
        n_fake=len(fakes),
        n_real=len(real_test),
        fake=fake,
        real=real,
        relative_gap=gap,
        auc=auc,
        gated=gated,
        tolerance=tolerance,
        stats_ok=stats_ok,
        grey_fakes=grey_fakes,
        nn_fake_to_train=float(np.median(nn_fake)),
        nn_real_test_to_train=float(np.median(nn_real)),
        copies=copies,
        ok=stats_ok and copies == 0,
    )
