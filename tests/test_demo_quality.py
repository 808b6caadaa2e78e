"""Generator quality checks: statistics gaps and memorisation are detected, not assumed."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.demo.quality import (
    COLOUR_STATISTICS,
    REPORT_STATISTICS,
    image_statistics,
    nearest_neighbour_distances,
    quality_report,
    summary_statistics,
)
from pipeline.demo.statistics import statistics_distance


def _faces(n: int, seed: int, contrast: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(128, 50 * contrast, size=(n, 3, 16, 16))
    return np.clip(x, 0, 255).astype(np.uint8)


def test_statistics_of_flat_image() -> None:
    flat = np.full((2, 3, 8, 8), 51, np.uint8)
    s = image_statistics(flat)
    np.testing.assert_allclose(s["mean"], 0.2, atol=1e-6)
    np.testing.assert_allclose(s["std"], 0.0, atol=1e-6)
    np.testing.assert_allclose(s["hf_energy"], 0.0, atol=1e-9)


def test_summary_statistics_detect_low_contrast() -> None:
    x = _faces(4, 0)
    flat = (x.astype(np.float32) * 0.5 + 64).astype(np.uint8)
    s, f = summary_statistics(x), summary_statistics(flat)
    assert s["mean"] == float(image_statistics(x)["mean"].mean())
    assert f["std"] < s["std"] and f["hf_energy"] < s["hf_energy"]


def test_washed_out_fakes_fail_and_matching_fakes_pass() -> None:
    train, test = _faces(64, 0), _faces(64, 1)
    good = quality_report(_faces(64, 2), train, test)
    washed = quality_report(_faces(64, 3, contrast=0.5), train, test)
    assert good.stats_ok and good.copies == 0 and good.ok
    assert not washed.stats_ok and washed.relative_gap["std"] > 0.3


def test_copies_of_training_faces_are_counted() -> None:
    train, test = _faces(32, 0), _faces(32, 1)
    fakes = np.concatenate([train[:5], _faces(27, 4)])
    rep = quality_report(fakes, train, test)
    assert rep.copies == 5 and not rep.ok
    d = nearest_neighbour_distances(train[:3], train)
    np.testing.assert_allclose(d, 0.0, atol=1e-3)


def test_colourfulness_catches_colour_casts_grey_statistics_miss() -> None:
    """A per-image colour cast keeps grey mean/std/hf nearly unchanged but fails the gate on colourfulness."""
    train, test = _faces(64, 0), _faces(64, 1)
    grey = np.repeat(_faces(64, 2)[:, :1], 3, axis=1)  # grey images: colourfulness of the noise removed
    ref = np.repeat(test[:, :1], 3, axis=1)
    cast = grey.astype(np.int16)
    cast[:, 0] += 40  # red up, blue down: the grey level (channel mean) stays where it was
    cast[:, 2] -= 40
    cast = np.clip(cast, 0, 255).astype(np.uint8)
    rep = quality_report(cast, train, ref)
    assert rep.relative_gap["mean"] < 0.02 and rep.relative_gap["hf_energy"] < 0.1
    assert rep.relative_gap["colourfulness"] > 10 * rep.relative_gap["std"] and not rep.stats_ok
    np.testing.assert_allclose(image_statistics(ref)["colourfulness"], 0.0, atol=1e-6)


def test_cast_statistics_catch_hue_shifts_colourfulness_misses() -> None:
    """Red and blue swapped (a cyan-blue face): about as colourful as before, but the wrong hue."""
    train, test = _faces(64, 0), _faces(64, 1)
    skin = test.astype(np.int16)
    skin[:, 0] += 30  # real-like faces: red-yellow
    skin[:, 2] -= 30
    skin = np.clip(skin, 0, 255).astype(np.uint8)
    swapped = skin[:, ::-1].copy()
    rep = quality_report(swapped, train, skin)
    assert rep.relative_gap["colourfulness"] < 0.15 and rep.relative_gap["mean"] < 0.02
    assert rep.relative_gap["cast_yb"] > 0.5 and not rep.stats_ok  # the sign of yellow-blue flipped
    assert rep.auc["cast_yb"] == 1.0


def test_hue_spread_catches_casts_that_average_out() -> None:
    """Half the faces cyan-green, half pink: the mean hue is the reals', the spread around it is not."""
    train, test = _faces(64, 0), _faces(64, 1)
    skin = test.astype(np.int16)
    skin[:, 0] += 30
    skin[:, 2] -= 30
    tinted = skin.copy()
    tinted[:32, 0] -= 40  # red down: cyan-green
    tinted[32:, 0] += 40  # red up: pink
    skin, tinted = (np.clip(a, 0, 255).astype(np.uint8) for a in (skin, tinted))
    rep = quality_report(tinted, train, skin)
    assert rep.relative_gap["cast_rg"] < 0.1 and rep.relative_gap["cast_yb"] < 0.1
    assert rep.relative_gap["cast_spread"] > 2 * rep.tolerance and "cast_spread" in rep.gated
    assert not rep.stats_ok
    assert rep.auc["cast_spread"] == 1.0 and rep.auc["cast_rg"] < 0.75
    same = quality_report(skin[::-1].copy(), train, skin)
    assert same.relative_gap["cast_spread"] < 1e-6  # the reals against themselves


def test_single_statistic_auc_is_reported() -> None:
    train, test = _faces(64, 0), _faces(64, 1)
    same = quality_report(_faces(64, 2), train, test)
    washed = quality_report(_faces(64, 3, contrast=0.5), train, test)
    assert all(0.5 <= v <= 1.0 for v in same.auc.values())
    assert same.auc["std"] < 0.75 and washed.auc["std"] == 1.0  # every washed-out fake has a lower std


def test_grey_reals_do_not_gate_colour() -> None:
    """Grey real faces (the built-in LFW crops) have no colour to match: colour is reported, not gated."""
    grey = lambda a: np.repeat(a[:, :1], 3, axis=1)  # noqa: E731
    train, test = grey(_faces(64, 0)), grey(_faces(64, 1))
    tinted = grey(_faces(64, 2)).astype(np.int16)
    tinted[:, 0] += 3  # a faint tint, as a generator trained on grey faces may leave
    rep = quality_report(np.clip(tinted, 0, 255).astype(np.uint8), train, test)
    assert not set(COLOUR_STATISTICS) & set(rep.gated) and rep.stats_ok
    assert rep.relative_gap["colourfulness"] < 10  # measured against the grey threshold, not a ~0 denominator
    assert rep.grey_fakes is True
    painted = grey(_faces(64, 2)).astype(np.int16)  # red-green faces with the grey level of grey ones
    painted[:, 0] += 30
    painted[:, 1] -= 30
    colourful = quality_report(np.clip(painted, 0, 255).astype(np.uint8), train, test)
    assert colourful.grey_fakes is False and not colourful.stats_ok
    assert all(colourful.relative_gap[k] <= 0.15 for k in colourful.gated)  # only the grey check fails it
    normal = quality_report(_faces(64, 2), _faces(64, 0), _faces(64, 1))
    assert normal.gated == list(REPORT_STATISTICS) and normal.grey_fakes is None


def test_statistics_distance_is_the_largest_gated_gap() -> None:
    real = {"mean": 0.5, "std": 0.2, "hf_energy": 0.02, "colourfulness": 0.15, "cast_rg": 0.1, "cast_yb": 0.1}
    fake = {**real, "std": 0.18, "hf_energy": 0.016}
    assert statistics_distance(fake, real) == pytest.approx(0.2)  # hf -20% beats std -10%
    assert statistics_distance(real, real) == 0.0
    grey_real = {**real, "colourfulness": 0.001}
    painted = {**grey_real, "colourfulness": 0.3, "std": 0.19}
    assert statistics_distance(painted, grey_real) == pytest.approx(0.05)  # colour not gated on grey reals
