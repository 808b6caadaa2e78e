"""Sampler sweep: one real tiny DM, gated per (steps, eta) exactly as the demo gates its fakes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.demo.dm_sampling import sample_dm
from pipeline.demo.dm_training import DmTrainConfig, train_dm
from pipeline.demo.faces import encode_jpeg, jpeg_roundtrip
from pipeline.demo.quality import quality_report
from pipeline.demo.sampler_sweep import recon_error, sweep_sampler
from pipeline.errors import ConfigError
from pipeline.inversion.ddim import DDIMReconstructor

if TYPE_CHECKING:
    from pathlib import Path

RES = 16


def faces(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (n, 3, 1, 1))
    return np.clip(base + rng.normal(0, 20, (n, 3, RES, RES)), 0, 255).astype(np.uint8)


def tiny_dm(folder: Path, sampler: str = "ddim") -> Path:
    cfg = DmTrainConfig(
        unet="tiny", resolution=RES, steps=6, batch_size=8, warmup=2, sample_steps=4, sampler=sampler
    )
    train_dm(cfg, faces(16, 0), folder, seed=0, device="cpu")
    return folder


def test_sweep_gates_each_setting_like_the_demo(tmp_path: Path) -> None:
    model = tiny_dm(tmp_path / "adm")
    train, test = faces(16, 1), faces(12, 2)
    rows = sweep_sampler(model, train, test, steps=[2, 4], etas=[0.0, 1.0], n=6, device="cpu")
    assert [(r.steps, r.eta) for r in rows] == [(2, 0.0), (2, 1.0), (4, 0.0), (4, 1.0)]
    # Each row is the gate of sample_dm's fakes after the codec, with the sign of fake - real.
    fakes = jpeg_roundtrip(sample_dm(model, 6, seed=1, device="cpu", steps=4), 75)
    rep = quality_report(fakes, train, test)
    row = rows[2]
    assert row.stats_ok == rep.stats_ok
    for k, gap in rep.relative_gap.items():
        assert row.signed_gap[k] == pytest.approx(np.sign(rep.fake[k] - rep.real[k]) * gap)
    assert row.best_auc == (max(rep.auc, key=rep.auc.get), pytest.approx(max(rep.auc.values())))
    # eta adds DDIM's ancestral noise: other images from the same initial noise.
    stochastic = sample_dm(model, 6, seed=1, device="cpu", steps=4, eta=1.0)
    assert not np.array_equal(stochastic, sample_dm(model, 6, seed=1, device="cpu", steps=4))
    # Epsilon scaling is a third axis; lambda 1 is the plain sampler (same noise, same gate as above).
    scaled = sweep_sampler(model, train, test, steps=[4], eps_scales=[1.0, 1.05], n=6, device="cpu")
    assert [(r.steps, r.eta, r.eps_scale) for r in scaled] == [(4, 0.0, 1.0), (4, 0.0, 1.05)]
    assert scaled[0].signed_gap == row.signed_gap and scaled[1].signed_gap != row.signed_gap


def test_sweep_reconstructs_fakes_and_reals_with_the_model(tmp_path: Path) -> None:
    """--recon-steps: each setting's JPEG'd fakes and the first n reals go through DDIM inversion +
    reconstruction with this model; raw MSE and MSE / pixel variance as the recon reports define them."""
    model = tiny_dm(tmp_path / "adm")
    train, test = faces(16, 1), faces(12, 2)
    rows = sweep_sampler(model, train, test, steps=[3], n=6, device="cpu", recon_steps=[2, 4])
    (row,) = rows
    assert set(row.recon) == set(row.recon_real) == {"2", "4"}
    fakes = jpeg_roundtrip(sample_dm(model, 6, seed=1, device="cpu", steps=3), 75)
    rec = DDIMReconstructor(model, steps=4, device="cpu")
    out = rec(fakes)
    x = (fakes.astype(np.float64) / 127.5) - 1.0
    mse = ((out - x) ** 2).reshape(6, -1).mean(1)
    norm = mse / np.maximum(x.reshape(6, -1).var(1), 0.01)
    assert row.recon["4"]["mse"] == pytest.approx(mse.mean(), rel=1e-4)
    assert row.recon["4"]["norm"] == pytest.approx(norm.mean(), rel=1e-4)
    assert row.recon_real["4"] == pytest.approx(recon_error(rec, test[:6], batch_size=64), rel=1e-6)
    assert row.recon["2"]["mse"] != row.recon["4"]["mse"]  # another step count, another round trip


def test_recon_steps_refuse_a_latent_model(tmp_path: Path) -> None:
    model = tiny_dm(tmp_path / "ldm")
    (model / "vae").mkdir()  # what marks a latent model folder (train_dm writes its autoencoder there)
    with pytest.raises(ConfigError, match="pixel-space DM"):
        sweep_sampler(model, faces(4, 1), faces(4, 2), steps=[2], n=2, device="cpu", recon_steps=[2])


def test_eta_needs_a_ddim_sampler(tmp_path: Path) -> None:
    model = tiny_dm(tmp_path / "iddpm", sampler="ddpm")
    with pytest.raises(ConfigError, match="`eta` needs a DDIM sampler"):
        sample_dm(model, 2, seed=0, device="cpu", steps=2, eta=1.0)
    with pytest.raises(ConfigError, match="at least one"):
        sweep_sampler(model, faces(4, 1), faces(4, 2), steps=[], device="cpu")


def test_cli_writes_the_rows(tmp_path: Path) -> None:
    model = tiny_dm(tmp_path / "adm")
    labels = ["path,split,source"]  # the `faces` stage's layout
    for split, seed in (("train", 1), ("test", 2)):
        (tmp_path / "faces" / split).mkdir(parents=True)
        for i, img in enumerate(faces(8, seed)):
            rel = f"{split}/{i:06d}.jpg"
            (tmp_path / "faces" / rel).write_bytes(
                encode_jpeg(np.ascontiguousarray(img.transpose(1, 2, 0)), 75)
            )
            labels.append(f"{rel},{split},synthetic")
    (tmp_path / "faces" / "labels.csv").write_text("\n".join(labels) + "\n")
    out = tmp_path / "sweep.json"
    args = ["dm-sweep", str(model), "--faces", str(tmp_path / "faces"), "--steps", "3", "--n", "4",
            "--recon-steps", "2"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["steps"] for r in rows] == [3] and set(rows[0]["signed_gap"]) >= {"hf_energy", "std"}
    assert "hf_energy" in result.output and "rec2 norm fake/real" in result.output
    assert set(rows[0]["recon"]) == set(rows[0]["recon_real"]) == {"2"}
