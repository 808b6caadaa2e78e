"""Metrics against hand-computed values on small arrays."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.metrics.classification import binary_metrics, equal_error_rate, ternary_metrics
from pipeline.metrics.report import write_evaluation

# 4 real, 2 stylegan (gan), 2 ldm (dm). Rows: p_real, p_gan, p_dm.
PROBS = np.array(
    [
        [0.8, 0.1, 0.1],  # real, correct
        [0.6, 0.3, 0.1],  # real, correct
        [0.3, 0.6, 0.1],  # real, predicted gan
        [0.5, 0.1, 0.4],  # real, correct
        [0.1, 0.8, 0.1],  # stylegan, correct
        [0.2, 0.2, 0.6],  # stylegan, predicted dm (still "fake")
        [0.1, 0.2, 0.7],  # ldm, correct
        [0.7, 0.1, 0.2],  # ldm, predicted real
    ]
)
LABELS = np.array([0, 0, 0, 0, 1, 1, 2, 2])
GENS = np.array(["real"] * 4 + ["stylegan"] * 2 + ["ldm"] * 2)


def test_subset_acc_and_ap_by_hand() -> None:
    m = ternary_metrics(PROBS, LABELS, GENS, seen_generators={"stylegan"})
    s = m["subsets"]
    assert s["real"]["acc"] == pytest.approx(3 / 4)
    assert s["stylegan"]["acc"] == pytest.approx(1 / 2)
    assert s["ldm"]["acc"] == pytest.approx(1 / 2)
    # stylegan AP: p_gan of {stylegan: .8, .2} vs real {.1, .3, .6, .1}: ranking .8(+) .6(-) .3(-) .2(+)
    # precision at the positives: 1/1 and 2/4 -> AP = (1 + 0.5) / 2
    assert s["stylegan"]["ap"] == pytest.approx(0.75)
    # ldm AP: p_dm of {ldm: .7, .2} vs real {.1, .1, .1, .4}: .7(+) .4(-) .2(+) -> (1 + 2/3) / 2
    assert s["ldm"]["ap"] == pytest.approx(5 / 6)
    # real AP: p_real, real positives {.8 .6 .3 .5} vs fakes {.1 .2 .1 .7}: .8+ .7- .6+ .5+ .3+
    assert s["real"]["ap"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 5) / 4)
    assert m["mean"]["acc"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert m["mean"]["ap"] == pytest.approx((0.75 + 5 / 6) / 2)  # Table I: AP mean over generators only
    assert m["mean_unseen"] == {"acc": pytest.approx(0.5), "ap": pytest.approx(5 / 6), "generators": ["ldm"]}
    assert s["stylegan"]["seen"] and not s["ldm"]["seen"]


def test_binary_view_by_hand() -> None:
    b = binary_metrics(PROBS, LABELS)
    # decisions: fake iff argmax != real -> real rows: F F T F ; fake rows: T T T F
    assert b["fpr"] == pytest.approx(1 / 4)
    assert b["fnr"] == pytest.approx(1 / 4)
    assert b["acc"] == pytest.approx(6 / 8)
    # fake score 1 - p_real: real {.2 .4 .7 .5}, fake {.9 .8 .9 .3}; pairs fake>real: 4+4+4+1 = 13 of 16
    assert b["roc_auc"] == pytest.approx(13 / 16)
    assert b["n_real"] == 4 and b["n_fake"] == 4


def test_eer_by_hand() -> None:
    # perfectly separated -> 0; one swapped pair in 2+2 -> FPR = FNR = 0.5 at a threshold
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.85, 0.8, 0.9])) == pytest.approx(0.5)
    # 4 vs 4 with one negative above one positive: ROC points (0, .25), (0, .75) (.25, .75) (.25, 1):
    # FPR - FNR crosses 0 between (0, .75) [diff -.25] and (.25, .75) [diff 0] -> EER .25
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.6, 0.8, 0.9, 0.95])
    assert equal_error_rate(y, s) == pytest.approx(0.25)
    assert equal_error_rate(np.array([1, 1]), np.array([0.2, 0.3])) is None


def test_write_evaluation_files(tmp_path) -> None:
    meta = {
        "image_id": np.array([f"id{i}" for i in range(8)]),
        "dataset": np.array(["d"] * 8),
        "generator": GENS,
        "family": np.array(["real"] * 4 + ["gan"] * 2 + ["dm"] * 2),
        "split": np.array(["test"] * 8),
    }
    m = write_evaluation(PROBS, LABELS, meta, tmp_path, detector="x", seen_generators={"stylegan"})
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["mean"]["acc"] == pytest.approx(m["mean"]["acc"]) and on_disk["detector"] == "x"
    table = pq.read_table(tmp_path / "predictions.parquet").to_pydict()
    assert table["predicted"] == ["real", "real", "gan", "real", "gan", "dm", "dm", "real"]
    assert table["p_gan"][4] == pytest.approx(0.8)
    rows = (tmp_path / "confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and rows[3] == "real,gan" and len(rows) == 9
    roc = (tmp_path / "roc.csv").read_text().splitlines()
    assert roc[0] == "fpr,tpr,threshold" and all("inf" not in r for r in roc)
    assert (tmp_path / "roc.png").stat().st_size > 0 and (tmp_path / "confusion.png").stat().st_size > 0
