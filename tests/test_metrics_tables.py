"""Table I / Table III summaries and the claims check, from sample metrics JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline.errors import InputDataError
from pipeline.metrics.tables import write_summary


def _metrics(detector: str, composition: str, unseen_acc: float, unseen_ap: float, mean_acc: float) -> dict:
    return {
        "detector": detector,
        "composition": composition,
        "subsets": {
            "real": {"family": "real", "n": 4, "acc": 0.9, "ap": 0.8, "seen": True},
            "stylegan": {"family": "gan", "n": 2, "acc": 1.0, "ap": 1.0, "seen": True},
            "ldm": {"family": "dm", "n": 2, "acc": unseen_acc, "ap": unseen_ap, "seen": False},
        },
        "mean": {"acc": mean_acc, "ap": 0.9},
        "mean_unseen": {"acc": unseen_acc, "ap": unseen_ap, "generators": ["ldm"]},
        "binary": {"acc": 0.9},
        "n": 8,
    }


def _write(root: Path, ms: list[dict]) -> Path:
    for m in ms:
        (root / "eval" / m["detector"]).mkdir(parents=True)
        (root / "eval" / m["detector"] / "metrics.json").write_text(json.dumps(m))
    return root / "eval"


def test_tables_and_claim_that_holds(tmp_path: Path) -> None:
    ms = [
        _metrics("multirecon", "multirecon", 0.8, 0.9, 0.85),
        _metrics("cnnspot", "cnnspot", 0.4, 0.6, 0.6),
        _metrics("rgb_gan_recon", "rgb_gan_recon", 0.5, 0.7, 0.7),
        _metrics("rgb_ddim_recon", "rgb_ddim_recon", 0.6, 0.8, 0.75),
        _metrics("control", "control", 0.3, 0.5, 0.5),
    ]
    ms[-1]["mean"]["ap"] = 0.6
    ms[0]["recon_mse"] = {
        "ddim": {
            "by_family": {
                f: {"n": 2, "mse": v, "mse_norm": v} for f, v in (("real", 0.02), ("gan", 0.03), ("dm", 0.01))
            }
        },
    }
    paths = write_summary(_write(tmp_path, ms), tmp_path / "reports")
    with paths["table1_csv"].open() as fh:
        rows = list(csv.reader(fh))
    gens = ["stylegan ACC", "stylegan AP", "ldm* ACC", "ldm* AP"]
    assert rows[0] == ["detector", "Real ACC", *gens, "Avg ACC", "Avg AP"]
    assert [r[0] for r in rows[1:]] == ["cnnspot", "multirecon", "rgb_ddim_recon", "rgb_gan_recon", "control"]
    assert rows[2][4:6] == ["80.0", "90.0"] and rows[2][6] == "85.0"
    with paths["table3_csv"].open() as fh:
        t3 = list(csv.reader(fh))
    assert [r[0] for r in t3[1:]] == ["multirecon", "rgb_gan_recon", "rgb_ddim_recon", "control"]
    assert t3[1][2:4] == ["yes", "yes"] and t3[2][2:4] == ["yes", "-"]
    claims = paths["claims"].read_text()
    assert "claim 1 **holds**" in claims
    assert "ddim: own family `dm` lowest in raw MSE: **holds**" in claims
    assert "WARNING" not in claims
    assert "| multirecon | multirecon | resnet" not in paths["table1_md"].read_text()  # no arch given: '-'
    again = write_summary(tmp_path / "eval", tmp_path / "reports2")
    assert all(again[k].read_bytes() == p.read_bytes() for k, p in paths.items())  # no wall-clock stamp


def test_claim_that_fails_and_confounded_control(tmp_path: Path) -> None:
    ms = [
        _metrics("multirecon", "multirecon", 0.5, 0.9, 0.8),
        _metrics("cnnspot", "cnnspot", 0.6, 0.6, 0.7),
        _metrics("control", "control", 0.3, 0.5, 0.78),
    ]
    claims = write_summary(_write(tmp_path, ms), tmp_path / "r")["claims"].read_text()
    assert "| cnnspot | ACC | 50.0 | 60.0 | fails |" in claims
    assert "| cnnspot | AP | 90.0 | 60.0 | holds |" in claims
    assert "**does not hold**: 1 of 2" in claims
    assert "rgb_gan_recon | - | - | not evaluated" in claims
    assert "WARNING" in claims and "mean ACC" in claims


def test_missing_metrics_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"metrics\.json"):
        write_summary(tmp_path, tmp_path / "out")


def test_generator_verdicts_open_claims(tmp_path: Path) -> None:
    ms = [_metrics("multirecon", "multirecon", 0.5, 0.9, 0.8)]
    gens = {
        "generators": {
            "adm": {"family": "dm", "ok": False, "copies": 0, "relative_gap": {"std": 0.4, "mean": 0.01}},
            "stylegan": {"family": "gan", "ok": True, "copies": 0, "relative_gap": {"std": 0.02}},
        },
        "failing": ["adm"],
    }
    report = tmp_path / "generators.json"
    report.write_text(json.dumps(gens))
    eval_dir = _write(tmp_path, ms)
    claims = write_summary(eval_dir, tmp_path / "r", generator_report=report)["claims"]
    text = claims.read_text()
    assert text.index("## Data quality") < text.index("## Claim 1")
    assert "- `adm` (dm): **fails** (gaps vs real: mean 1%, std 40%; copies 0)." in text
    assert "- `stylegan` (gan): passes" in text and "WARNING: adm fail" in text
    with pytest.raises(InputDataError, match="generator report"):
        write_summary(eval_dir, tmp_path / "r", generator_report=tmp_path / "nope.json")


def test_claim2_merges_recon_stores_and_quotes_own_generator(tmp_path: Path) -> None:
    fam = {"real": {"n": 2, "mse": 0.02, "mse_norm": 0.1}, "gan": {"n": 2, "mse": 0.01, "mse_norm": 0.05}}
    a = _metrics("multirecon", "multirecon", 0.5, 0.9, 0.8) | {"recon_mse": {"gan": {"by_family": fam}}}
    b = _metrics("dire", "dire", 0.5, 0.9, 0.8) | {"recon_mse": {"ddim": {"by_family": fam}}}
    report = tmp_path / "gan_demo.json"
    report.write_text(json.dumps({"own_generator": "stylegan", "premise_holds_mse": True,
                                  "premise_holds_mse_over_var": False}))  # fmt: skip
    paths = write_summary(_write(tmp_path, [a, b]), tmp_path / "r", recon_reports=[report])
    text = paths["claims"].read_text()
    assert "| gan | real |" in text and "| ddim | real |" in text
    assert "own generator `stylegan`" in text and "raw **holds**" in text
    assert "normalisation **fails**" in text


def test_claims_say_whether_ddim_reconstruction_used_the_models_own_sampler_settings(tmp_path: Path) -> None:
    eval_dir = _write(tmp_path, [_metrics("dire", "dire", 0.5, 0.9, 0.8)])
    own = {"scheduler": "DDIMScheduler", "same_scheduler_config": True, "differing_settings": [],
           "eps_scale": 1.005, "same_eps_scale": True, "sample_steps": 100}  # fmt: skip
    same = tmp_path / "ddim_demo.json"
    same.write_text(json.dumps({"steps": 10, "eps_scale": 1.005, "own_sampler": own}))
    text = write_summary(eval_dir, tmp_path / "r", recon_reports=[same])["claims"].read_text()
    assert "vs the model's own sampler: **same settings**: the same DDIM scheduler config," in text
    assert "epsilon scaling 1.005 (sampler 1.005), 10 steps vs the sampler's 100 (the step" in text
    other = own | {"same_scheduler_config": False, "differing_settings": ["clip_sample_range"],
                   "same_eps_scale": False}  # fmt: skip
    same.write_text(json.dumps({"steps": 10, "eps_scale": 1.0, "own_sampler": other}))
    text = write_summary(eval_dir, tmp_path / "r", recon_reports=[same])["claims"].read_text()
    assert "**not the sampler's settings**" in text and "differs in `clip_sample_range`" in text
    hub = own | {"scheduler": "DDPMScheduler", "same_scheduler_config": None, "sample_steps": None,
                 "eps_scale": 1.0}  # fmt: skip
    same.write_text(json.dumps({"steps": 10, "eps_scale": 1.0, "own_sampler": hub}))
    text = write_summary(eval_dir, tmp_path / "r", recon_reports=[same])["claims"].read_text()
    assert "a DDPMScheduler, not DDIM: settings not comparable, epsilon scaling 1.0 (sampler 1.0)" in text
    assert "1.0), 10 steps (the step count is a run argument" in text
