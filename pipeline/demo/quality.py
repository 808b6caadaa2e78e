"""Is a demo generator good enough to mean something? Pixel statistics and a memorisation check.

DEMO-SCIENCE.md measured that an undertrained DM makes washed-out faces that any detector separates
by contrast alone. So every generator's samples are compared with real faces on the statistics a
trivial classifier would use (mean, std, high-frequency energy, colourfulness, colour cast), within a stated
tolerance, and checked not to be copies of training faces (nearest-neighbour distances). Beside the gaps of
the means, the report gives each statistic's AUC as a one-number real-vs-fake classifier: how far a detector
could get on that statistic alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "COLOUR_STATISTICS",
    "GATE_STATISTICS",
    "QualityReport",
    "image_statistics",
    "nearest_neighbour_distances",
    "quality_report",
    "relative_gaps",
    "single_statistic_auc",
    "summary_statistics",
]


GATE_STATISTICS = ("mean", "std", "hf_energy", "colourfulness", "cast_rg", "cast_yb")
COLOUR_STATISTICS = ("colourfulness", "cast_rg", "cast_yb")
# Real faces below this colourfulness are grey (the built-in LFW crops): colour is then not a statistic a
# generator could match or miss in a meaningful relative sense, so it is reported but not gated.
GREY_COLOURFULNESS = 0.02


def image_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image `GATE_STATISTICS` of uint8 ``(N, 3, H, W)`` on a [0, 1] scale.

    High-frequency energy = mean squared 4-neighbour Laplacian of the grey image. Colourfulness = Hasler &
    Suesstrunk (2003): ``sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mu_rg^2 + mu_yb^2)`` with ``rg = R - G`` and
    ``yb = (R + G) / 2 - B``; it catches colour casts that grey-level statistics miss. ``cast_rg`` /
    ``cast_yb`` = the image's mean ``rg`` / ``yb``: its overall hue. Skin is red-yellow (both ~0.15 on
    UTKFace); a cyan or green face lowers them although its colourfulness may equal a real face's (the medium
    run's ``iddpm``: colourfulness +8%, cast_rg -72%).
    """
    x = images.astype(np.float32) / 255.0
    grey = x.mean(axis=1)
    lap = (
        4 * grey[:, 1:-1, 1:-1]
        - grey[:, :-2, 1:-1]
        - grey[:, 2:, 1:-1]
        - grey[:, 1:-1, :-2]
        - grey[:, 1:-1, 2:]
    )
    rg = (x[:, 0] - x[:, 1]).reshape(len(x), -1)
    yb = (0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]).reshape(len(x), -1)
    colourfulness = np.sqrt(rg.std(axis=1) ** 2 + yb.std(axis=1) ** 2) + 0.3 * np.sqrt(
        rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2
    )
    return {
        "mean": x.reshape(len(x), -1).mean(axis=1),
        "std": x.reshape(len(x), -1).std(axis=1),
        "hf_energy": (lap**2).reshape(len(x), -1).mean(axis=1),
        "colourfulness": colourfulness,
        "cast_rg": rg.mean(axis=1),
        "cast_yb": yb.mean(axis=1),
    }


def single_statistic_auc(fake: np.ndarray, real: np.ndarray) -> float:
    """Separability of two samples of one statistic: ``max(AUC, 1 - AUC)``. 0.5 = the statistic tells
    nothing, 1.0 = a threshold on it separates fakes from reals perfectly."""
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(np.r_[np.ones(len(fake)), np.zeros(len(real))], np.r_[fake, real])
    return float(max(auc, 1.0 - auc))


def relative_gaps(fake: dict[str, float], real: dict[str, float]) -> dict[str, float]:
    """``|fake[k] - real[k]| / scale[k]`` per statistic: the gate's measure, also logged during training.

    The scale is ``|real[k]|``, except for the `COLOUR_STATISTICS`: their scale is the reals' colourfulness
    (at least `GREY_COLOURFULNESS`). A cast's mean hue can sit near 0 (grey or colour-balanced reals), and a
    hue shift matters in proportion to how colourful the real faces are.
    """
    colour_scale = max(abs(real.get("colourfulness", 0.0)), GREY_COLOURFULNESS)
    return {
        k: abs(fake[k] - real[k]) / (colour_scale if k in COLOUR_STATISTICS else max(abs(real[k]), 1e-8))
        for k in fake
    }


def summary_statistics(images: np.ndarray) -> dict[str, float]:
    """Means over images of `image_statistics`: the numbers training reports and `quality_report` compare."""
    return {k: float(v.mean()) for k, v in image_statistics(images).items()}


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

    ``relative_gap[k]`` (`relative_gaps` of the means) for each statistic; the
    statistics pass when every gap in ``gated`` is within ``tolerance`` (all of them, except the
    `COLOUR_STATISTICS` when the real faces are grey, `GREY_COLOURFULNESS`). ``auc[k]``
    (`single_statistic_auc`) is reported, not gated. A fake whose nearest training face is closer than
    ``copy_threshold`` RMS (on [0, 1]) counts as a copy.
    """
    per_fake, per_real = image_statistics(fakes), image_statistics(real_test)
    fake = {k: float(v.mean()) for k, v in per_fake.items()}
    real = {k: float(v.mean()) for k, v in per_real.items()}
    gap = relative_gaps(fake, real)
    grey = real["colourfulness"] < GREY_COLOURFULNESS  # gaps then measured against the grey threshold
    gated = [k for k in GATE_STATISTICS if not (grey and k in COLOUR_STATISTICS)]
    auc = {k: single_statistic_auc(per_fake[k], per_real[k]) for k in fake}
    nn_fake = nearest_neighbour_distances(fakes, real_train)
    nn_real = nearest_neighbour_distances(real_test, real_train)
    copies = int((nn_fake < copy_threshold).sum())
    stats_ok = all(gap[k] <= tolerance for k in gated)
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
        nn_fake_to_train=float(np.median(nn_fake)),
        nn_real_test_to_train=float(np.median(nn_real)),
        copies=copies,
        ok=stats_ok and copies == 0,
    )
