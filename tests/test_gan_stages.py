"""The two GAN stages end to end on a tiny project folder (typer apps, params.yaml, real files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from pipeline.cache.store import open_store, write_input_store
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.gan.stylegan2 import Generator


def test_train_encoder_then_recon_gan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stages.recon_gan import app as recon_app
    from stages.train_encoder import app as enc_app

    monkeypatch.chdir(tmp_path)
    params = {
        "base": {"seed": 0, "device": "cpu"},
        "data": {"resolution": 8},
        "cache": {"chunk_images": 4, "shard_images": 8},
        "recon": {"batch_size": 4, "gan": {"opt_steps": 2, "opt_lr": 0.01}},
        "encoder": {"steps": 3, "batch_size": 4, "feature_res": 4, "width": 8, "max_width": 16},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    faces = tmp_path / "faces"
    faces.mkdir()
    rng = np.random.default_rng(0)
    with (faces / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "split"])
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(faces / f"{i}.jpg")
            w.writerow([f"{i}.jpg", "train" if i < 4 else "test"])
    torch.manual_seed(0)
    g = Generator(8, 8, 1, max_channels=8)
    save_checkpoint(tmp_path / "gen", g, kind="stylegan2", config=g.arch_config)

    runner = CliRunner()
    res = runner.invoke(enc_app, ["--generator", "gen", "--faces", "faces", "--out", "enc"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "enc" / "report.json").read_text())["steps"] == 3
    # off a terminal, progress is plain lines (pipeline.progress), not hidden and not carriage-return redraws
    assert "train encoder: 100%" in res.output and "\r" not in res.output

    images = rng.integers(0, 256, (5, 3, 8, 8), dtype=np.uint8)
    write_input_store(tmp_path / "images.zarr", images, [f"i{k}" for k in range(5)], {}, chunk_images=4,
                      shard_images=8)  # fmt: skip
    args = ["demo", "--input", "images.zarr", "--generator", "gen", "--encoder", "enc", "--out", "gan.zarr",
            "--work-dir", "work", "--report", "reports/gan.json"]  # fmt: skip
    res = runner.invoke(recon_app, args)
    assert res.exit_code == 0, res.output
    assert "recon shards w0: 100%" in res.output
    store = open_store(tmp_path / "gan.zarr")
    assert store["recon"].shape == (5, 3, 8, 8)
    report = json.loads((tmp_path / "reports" / "gan.json").read_text())
    assert report["provenance"]["opt_steps"] == 2 and report["mse"]["all"]["n"] == 5
