"""Generator report: training facts joined with sample quality, the Markdown table and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.demo.quality import GATE_STATISTICS
from pipeline.demo.report import generator_table, write_generator_report
from pipeline.errors import InputDataError


def _quality(name: str, family: str, gap: float, copies: int = 0) -> dict:
    real = {"mean": 0.5, "std": 0.2, "hf_energy": 0.01, "colourfulness": 0.1, "cast_rg": 0.1, "cast_yb": 0.1}
    fake = {k: v * (1 + gap) for k, v in real.items()}
    ok = gap <= 0.15
    return {
        "generator": name, "family": family, "role": "test", "kind": "x", "fake": fake, "real": real,
        "relative_gap": {k: gap for k in real}, "auc": {k: 0.5 + gap for k in real}, "tolerance": 0.15,
        "stats_ok": ok, "copies": copies,
        "nn_fake_to_train": 0.1, "nn_real_test_to_train": 0.1, "ok": ok and copies == 0,
        "n_fake": 4, "n_real": 4,
    }  # fmt: skip


def _write(tmp: Path, name: str, model_report: tuple[str, dict], quality: dict) -> tuple[Path, Path]:
    model, fakes = tmp / "models" / name, tmp / "fakes" / name
    model.mkdir(parents=True)
    fakes.mkdir(parents=True)
    (model / model_report[0]).write_text(json.dumps(model_report[1]))
    (fakes / "quality.json").write_text(json.dumps(quality))
    Image.fromarray(np.full((34, 34, 3), 128, np.uint8)).save(fakes / "samples.png")
    return model, fakes


DM = {
    "config": {"kind": "ldm", "unet": "ldm-s", "autoencoder": "kl-f4-s", "ae_steps": 800, "steps": 3000,
               "sampler": "ddim", "sample_steps": 50},
    "unet_params": 2_000_000, "autoencoder_params": 500_000, "train_seconds": 600.0, "ae_seconds": 120.0,
    "seconds_per_step": 0.2, "sample_preclamp": {"min": -1.2, "max": 1.1, "frac_outside_1": 0.031},
}  # fmt: skip
GAN = {"arch": "dcgan", "steps": 2000, "g_params": 300_000, "d_params": 200_000, "seconds": 480.0,
       "s_per_step": 0.24}  # fmt: skip


def test_report_joins_training_and_quality(tmp_path: Path) -> None:
    ldm = _write(tmp_path, "ldm", ("train_report.json", DM), _quality("ldm", "dm", 0.05))
    dcgan = _write(tmp_path, "dcgan", ("report.json", GAN), _quality("dcgan", "gan", 0.30, copies=2))
    summary = write_generator_report([ldm[0], dcgan[0]], [ldm[1], dcgan[1]], None, tmp_path / "out")
    by = summary["generators"]
    assert by["ldm"]["params"] == 2_500_000 and by["ldm"]["train_seconds"] == 720.0
    assert by["ldm"]["ae_steps"] == 800 and by["ldm"]["preclamp_outside"] == pytest.approx(0.031)
    assert by["dcgan"]["preclamp_outside"] is None and by["dcgan"]["params"] == 500_000
    assert json.loads((tmp_path / "out" / "generators.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["all_ok"] is False and summary["failing"] == ["dcgan"]
    md = (tmp_path / "out" / "generators.md").read_text()
    assert "800 AE + 3,000" in md and "3.1%" in md and "statistics off" in md
    assert "0.80 (mean)" in md  # the best single-statistic AUC of dcgan (all tie: the first statistic)
    assert md.count("\n| ") == 3  # header + two generators
    assert md.splitlines()[2].count("|") == 21 and "| n/a |" in md  # a quality.json without the hue spread
    assert by["ldm"]["colour_error_900"] is None  # a report from before x0_error_by_t
    assert Image.open(tmp_path / "out" / "generators.png").size[0] > 100
    assert by["dcgan"]["snapshot_step"] == 2000  # a report from before `snapshot`: the last one


def test_gan_row_names_a_kept_snapshot(tmp_path: Path) -> None:
    kept = {**GAN, "snapshot_step": 1250, "snapshot_distance": 0.08}
    dcgan = _write(tmp_path, "dcgan", ("report.json", kept), _quality("dcgan", "gan", 0.05))
    summary = write_generator_report([dcgan[0]], [dcgan[1]], None, tmp_path / "out")
    assert summary["generators"]["dcgan"]["snapshot_step"] == 1250
    assert "one forward pass (EMA of step 1,250)" in (tmp_path / "out" / "generators.md").read_text()


def test_pixel_dm_row_shows_prediction_type_and_colour_error(tmp_path: Path) -> None:
    adm_report = {
        **DM,
        "config": {**DM["config"], "kind": "ddpm", "unet": "adm-s", "prediction_type": "v_prediction"},
        "autoencoder_params": 0,
        "ae_seconds": 0.0,
        "x0_error_by_t": {"900": {"colour_rms": 0.06, "colour_baseline_rms": 0.03}},
    }
    adm = _write(tmp_path, "adm", ("train_report.json", adm_report), _quality("adm", "dm", 0.05))
    summary = write_generator_report([adm[0]], [adm[1]], None, tmp_path / "out")
    row = summary["generators"]["adm"]
    assert row["arch"] == "ddpm/adm-s (v-pred)" and row["colour_error_900"] == pytest.approx(2.0)
    assert "| 2.0x |" in (tmp_path / "out" / "generators.md").read_text()
    # grey reals: no colour to guess, so the unit is a just-visible cast, not a baseline of ~0
    grey = {"900": {"colour_rms": 0.0005, "colour_baseline_rms": 3e-9}}
    _write(
        tmp_path,
        "adm_grey",
        ("train_report.json", {**adm_report, "x0_error_by_t": grey}),
        _quality("g", "dm", 0),
    )
    summary = write_generator_report(
        [tmp_path / "models" / "adm_grey"], [tmp_path / "fakes" / "adm_grey"], None, tmp_path / "out2"
    )
    assert summary["generators"]["g"]["colour_error_900"] == pytest.approx(0.05)


def test_verdict_names_copies_when_statistics_pass() -> None:
    row = {
        "generator": "g", "family": "gan", "role": "train", "arch": "a", "params": 1, "steps": 1,
        "ae_steps": 0, "train_seconds": 1.0, "s_per_step": 1.0, "sampler": "s", "preclamp_outside": None,
        "fake": dict.fromkeys(GATE_STATISTICS, 1.0), "real": dict.fromkeys(GATE_STATISTICS, 1.0),
        "relative_gap": dict.fromkeys(GATE_STATISTICS, 0.0), "auc": dict.fromkeys(GATE_STATISTICS, 0.5),
        "tolerance": 0.15, "stats_ok": True,
        "copies": 3, "ok": False,
    }  # fmt: skip
    assert "| copies |" in generator_table([row]).splitlines()[2]
    grey = generator_table([{**row, "gated": ["mean", "std", "hf_energy"]}])
    assert grey.count("not gated: grey reals") == 3  # colourfulness and the two casts


def test_missing_quality_names_file(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(InputDataError, match=r"quality\.json"):
        write_generator_report([tmp_path / "m"], [tmp_path / "f"], None, tmp_path / "out")
    with pytest.raises(InputDataError, match="same order"):
        write_generator_report([tmp_path / "m"], [], None, tmp_path / "out")


def _image_folder(root: Path, images: np.ndarray, split: str) -> None:
    """A labels.csv + JPEG folder as the faces and sample stages write it."""
    (root / split).mkdir(parents=True, exist_ok=True)
    lines = ["path,split"]
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(root / split / f"{i:03d}.jpg", quality=95)
        lines.append(f"{split}/{i:03d}.jpg,{split}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def test_report_plots_spectrum_ratios(tmp_path: Path) -> None:
    """With the real faces given, each generator gets its fake/real spectrum; a blurred one falls off."""
    from PIL import ImageFilter

    rng = np.random.default_rng(0)
    reals = np.clip(rng.normal(128, 40, (24, 3, 16, 16)), 0, 255).astype(np.uint8)
    blurred = np.stack(
        [np.asarray(Image.fromarray(x.transpose(1, 2, 0)).filter(ImageFilter.GaussianBlur(1))) for x in reals]
    ).transpose(0, 3, 1, 2)
    _image_folder(tmp_path / "faces", reals, "test")
    sharp = _write(tmp_path, "sharp", ("report.json", GAN), _quality("sharp", "gan", 0.0))
    soft = _write(tmp_path, "soft", ("report.json", GAN), _quality("soft", "gan", 0.0))
    _image_folder(sharp[1], reals[::-1], "test")
    _image_folder(soft[1], blurred, "test")
    summary = write_generator_report(
        [sharp[0], soft[0]], [sharp[1], soft[1]], tmp_path / "faces", tmp_path / "o"
    )
    by = summary["generators"]
    assert len(summary["spectrum_freq"]) == len(by["soft"]["spectrum_ratio"]) == 11  # radius 1 .. 8 sqrt(2)
    assert by["sharp"]["spectrum_ratio"] == pytest.approx([1.0] * 11, rel=0.05)  # the same images
    assert by["soft"]["spectrum_ratio"][-1] < 0.2 * by["soft"]["spectrum_ratio"][0]
    assert Image.open(tmp_path / "o" / "generators_spectrum.png").size[0] > 100
