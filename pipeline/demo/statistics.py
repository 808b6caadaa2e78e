"""Per-image pixel statistics of faces: what a trivial real-vs-fake classifier would look at.

Generator training logs these for its samples (dvclive ``stats/*``) and the demo's quality gate
(`pipeline.demo.quality`) compares them between fakes and real faces. They live apart from the gate so that
changing the gate's verdict rules never re-runs a generator's training (DVC hashes each stage's code).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "COLOUR_STATISTICS",
    "GATE_STATISTICS",
    "GREY_COLOURFULNESS",
    "gated_statistics",
    "image_statistics",
    "relative_gaps",
    "statistics_distance",
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


def relative_gaps(
    fake: dict[str, float], real: dict[str, float], *, colour: tuple[str, ...] = COLOUR_STATISTICS
) -> dict[str, float]:
    """``|fake[k] - real[k]| / scale[k]`` per statistic: the gate's measure, also logged during training.

    The scale is ``|real[k]|``, except for the ``colour`` statistics: their scale is the reals' colourfulness
    (at least `GREY_COLOURFULNESS`). A cast's mean hue can sit near 0 (grey or colour-balanced reals), and a
    hue shift matters in proportion to how colourful the real faces are.
    """
    colour_scale = max(abs(real.get("colourfulness", 0.0)), GREY_COLOURFULNESS)
    return {
        k: abs(fake[k] - real[k]) / (colour_scale if k in colour else max(abs(real[k]), 1e-8)) for k in fake
    }


def statistics_distance(fake: dict[str, float], real: dict[str, float]) -> float:
    """The largest `relative_gaps` entry over `GATE_STATISTICS`, colour left out when the reals are grey (as
    the gate does): one number for "how far these samples sit from the real faces", smaller is closer. GAN
    training can keep the snapshot that minimises it against the training faces (``closest_stats``)."""
    keys = gated_statistics(GATE_STATISTICS, real)
    return max(relative_gaps({k: fake[k] for k in keys}, real).values())


def gated_statistics(
    keys: tuple[str, ...], real: dict[str, float], *, colour: tuple[str, ...] = COLOUR_STATISTICS
) -> list[str]:
    """``keys`` without the ``colour`` ones when the real faces are grey (`GREY_COLOURFULNESS`): the one rule
    of which statistics count, shared by the gate and by GAN snapshot selection."""
    grey = real["colourfulness"] < GREY_COLOURFULNESS
    return [k for k in keys if not (grey and k in colour)]


def summary_statistics(images: np.ndarray) -> dict[str, float]:
    """Means over images of `image_statistics`: the numbers training reports and `quality_report` compare."""
    return {k: float(v.mean()) for k, v in image_statistics(images).items()}
