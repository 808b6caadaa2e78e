"""Shared recon report: per-group statistics, the premise verdict, and the manifest join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import StaleCacheError
from pipeline.inversion.report import VARIANCE_FLOOR, manifest_groups, pixel_variance, reconstruction_summary


def test_summary_groups_psnr_and_premise() -> None:
    mse = np.array([0.04, 0.04, 0.01, 0.01, 0.09])
    var = np.array([0.2, 0.2, 0.01, 0.01, 0.3])
    gen = np.array(["real", "real", "adm", "adm", "sg"])
    groups = {"all": np.ones(5, bool), **{f"generator={g}": gen == g for g in ("real", "adm", "sg")}}
    out = reconstruction_summary(mse, var, groups, own_generator="adm")
    assert out["mse"]["generator=adm"] == {
        "n": 2, "mean": pytest.approx(0.01), "median": pytest.approx(0.01), "std": 0.0
    }  # fmt: skip
    assert out["psnr"]["all"]["n"] == 5
    np.testing.assert_allclose(out["psnr"]["generator=adm"]["mean"], 10 * np.log10(4 / 0.01))
    # adm is lowest raw, but its low contrast makes it the highest after normalisation.
    assert out["premise_holds_mse"] is True and out["premise_holds_mse_over_var"] is False
    alone = reconstruction_summary(mse, var, {"generator=adm": gen == "adm"}, own_generator="adm")
    assert alone["premise_holds_mse"] is False  # nothing to compare with
    assert "premise_holds_mse" not in reconstruction_summary(mse, var, groups, own_generator="ldm")


def test_flat_image_variance_is_floored() -> None:
    """A saturated fake (pixel variance 0) must not dominate its group's MSE / variance mean."""
    mse, var = np.array([0.02, 0.02]), np.array([0.0, 0.2])
    out = reconstruction_summary(mse, var, {"all": np.ones(2, bool)}, own_generator=None)
    expected = (0.02 / VARIANCE_FLOOR + 0.02 / 0.2) / 2
    assert out["mse_over_var"]["all"]["mean"] == pytest.approx(expected)


def test_manifest_groups_join_and_stale(tmp_path: Path) -> None:
    ids = np.array(["a", "b", "c"])
    rows = {
        "image_id": ["c", "x", "a", "b"],
        "family": ["dm", "real", "real", ""],
        "generator": ["adm", "real", "real", ""],
        "cache_index": [2, -1, 0, 1],  # a rejected file has no cache row
    }
    pq.write_table(pa.table(rows), tmp_path / "m.parquet")
    groups = manifest_groups(tmp_path / "m.parquet", ids)
    assert set(groups) == {"family=dm", "family=real", "generator=adm", "generator=real"}
    assert groups["family=real"].tolist() == [True, False, False]
    with pytest.raises(StaleCacheError, match="cache_index 2"):
        manifest_groups(tmp_path / "m.parquet", np.array(["a", "b", "z"]))


def test_pixel_variance_in_model_units() -> None:
    x = np.zeros((3, 3, 4, 4), np.uint8)
    x[1, :, :, :2] = 255  # half black, half white: values -1 and 1
    np.testing.assert_allclose(pixel_variance(x, chunk=2), [0.0, 1.0, 0.0])
