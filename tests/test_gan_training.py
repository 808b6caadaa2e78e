"""Demo GAN training: real losses, lazy R1, EMA checkpoint, deterministic sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.demo.gan_sampling import load_generator, sample_gan
from pipeline.demo.gan_training import GanTrainConfig, build_models, train_gan
from pipeline.demo.quality import GATE_STATISTICS
from pipeline.device import seed_everything
from pipeline.errors import ConfigError, InputDataError, ModelLoadError
from pipeline.models.gan.highpass import HighPassView


def get_config(**overrides: object) -> GanTrainConfig:
    kw: dict = {
        "arch": "stylegan2",
        "resolution": 8,
        "style_dim": 8,
        "n_mlp": 1,
        "max_channels": 8,
        "d_max_channels": 8,
        "base_channels": 4,
        "steps": 6,
        "batch_size": 4,
        "r1_every": 2,
        "log_every": 1,
        "ema_decay": 0.5,
        "stats_every": 2,
    }
    kw.update(overrides)
    return GanTrainConfig(**kw)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.zeros((16, 3, 8, 8), dtype=np.float32)
    base[:, 0, 2:6, 2:6] = 200  # a bright blob on dark ground, plus noise
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.filterwarnings("error::UserWarning")  # e.g. a non-leaf EMA weight's .grad read by .cpu()
@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_train_few_steps(arch: str, faces: np.ndarray, tmp_path: Path) -> None:
    cfg = get_config(arch=arch)
    report = train_gan(
        cfg, faces, tmp_path / "g", seed=3, device=torch.device("cpu"), live_dir=tmp_path / "live"
    )
    assert len(report.history) == cfg.steps
    for row in report.history:
        assert np.isfinite(row["loss_d"]) and np.isfinite(row["loss_g"]) and np.isfinite(row["r1"])
    # Lazy R1: recomputed at steps 0, 2, 4 only, so odd steps repeat the previous value.
    r1 = [row["r1"] for row in report.history]
    assert r1[1] == r1[0] and r1[3] == r1[2] and r1[2] != r1[1] and r1[4] != r1[3]
    # Parameters moved away from the seeded initialisation.
    seed_everything(3)
    g0, _ = build_models(cfg)
    g1 = load_generator(tmp_path / "g")
    moved = [k for k, v in g1.state_dict().items() if not torch.equal(v, g0.state_dict()[k])]
    assert len(moved) > len(g1.state_dict()) // 2
    assert (tmp_path / "g" / "samples.png").is_file()
    assert set(report.sample_stats) == set(report.real_stats) == set(GATE_STATISTICS)
    # Gate statistics of the EMA generator's JPEG'd samples: every `stats_every` steps and at the end.
    logged = [i for i, row in enumerate(report.history) if "stats_hf_energy" in row]
    assert logged == [i for i in range(cfg.steps) if (i + 1) % cfg.stats_every == 0 or i == cfg.steps - 1]
    assert (tmp_path / "live" / "plots" / "metrics" / "stats" / "hf_energy_gap.tsv").is_file()
    assert json.loads((tmp_path / "g" / "config.json").read_text())["kind"] == arch
    assert (tmp_path / "live" / "metrics.json").is_file()
    assert report.g_params > 0 and report.d_params > 0


def test_sample_deterministic(faces: np.ndarray, tmp_path: Path) -> None:
    train_gan(get_config(steps=2), faces, tmp_path, seed=0, device=torch.device("cpu"))
    a = sample_gan(tmp_path, 10, seed=7, batch_size=4)
    b = sample_gan(tmp_path, 10, seed=7, batch_size=4)
    c = sample_gan(tmp_path, 10, seed=8, batch_size=4)
    assert a.shape == (10, 3, 8, 8) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_bad_inputs(faces: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="arch"):
        get_config(arch="vqgan")
    with pytest.raises(ConfigError, match="resolution"):
        get_config(resolution=12)
    with pytest.raises(InputDataError, match="resolution"):
        train_gan(get_config(resolution=16), faces, tmp_path, seed=0, device=torch.device("cpu"))
    with pytest.raises(ModelLoadError):
        load_generator(tmp_path / "nothing")


def test_statistics_logging_does_not_change_training(faces: np.ndarray, tmp_path: Path) -> None:
    """Gate statistics draw noise from a forked RNG: the trained weights are the same without logging."""
    cpu = torch.device("cpu")
    train_gan(get_config(stats_every=2), faces, tmp_path / "a", seed=5, device=cpu)
    train_gan(get_config(stats_every=1000), faces, tmp_path / "b", seed=5, device=cpu)
    a, b = load_generator(tmp_path / "a").state_dict(), load_generator(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_resumed_training_equals_an_uninterrupted_run(arch: str, faces: np.ndarray, tmp_path: Path) -> None:
    """Stopped at step 4 with its state in work_dir and resumed to 8 steps: bit-identical to an 8-step run
    (G, D, EMA, both Adams, numpy and torch RNG, history and dvclive curves all restored)."""
    cpu, work = torch.device("cpu"), tmp_path / "work"
    whole = train_gan(get_config(arch=arch, steps=8), faces, tmp_path / "whole", seed=5, device=cpu)
    first = train_gan(
        get_config(arch=arch, steps=4), faces, tmp_path / "a", seed=5, device=cpu, work_dir=work
    )
    assert first.resumed_from_step == 0 and (work / "state.pt").is_file()
    rest = train_gan(
        get_config(arch=arch, steps=8), faces, tmp_path / "b", seed=5, device=cpu, work_dir=work,
        live_dir=tmp_path / "live",
    )  # fmt: skip
    assert rest.resumed_from_step == 4
    a, b = load_generator(tmp_path / "whole").state_dict(), load_generator(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [{k: v for k, v in r.items() if k != "img_per_s"} for r in h]  # noqa: E731
    assert strip(rest.history) == strip(whole.history) and len(rest.history) == 8
    other = train_gan(
        get_config(arch=arch, steps=8, lr=1e-3), faces, tmp_path / "c", seed=5, device=cpu, work_dir=work
    )
    assert other.resumed_from_step == 0  # another recipe: its state is not used


def test_changing_only_logging_keys_resumes_the_saved_state(faces: np.ndarray, tmp_path: Path) -> None:
    cpu, work = torch.device("cpu"), tmp_path / "work"
    train_gan(get_config(steps=4), faces, tmp_path / "a", seed=5, device=cpu, work_dir=work)
    relogged = train_gan(
        get_config(steps=4, stats_every=3, log_every=2, jpeg_quality=90), faces, tmp_path / "b", seed=5,
        device=cpu, work_dir=work,
    )  # fmt: skip
    assert relogged.resumed_from_step == 4  # nothing retrained
    a, b = load_generator(tmp_path / "a").state_dict(), load_generator(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["stylegan2", "dcgan"])
def test_highpass_discriminator_trains(arch: str, faces: np.ndarray, tmp_path: Path) -> None:
    """`d_highpass` puts the high-pass view inside D: D takes RGB, R1 differentiates through the view."""
    cfg = get_config(arch=arch, d_highpass=2.0)
    _, d = build_models(cfg)
    assert isinstance(d[0], HighPassView) and d[0].weight == 2.0
    assert sum(p.numel() for p in d.parameters()) > sum(
        p.numel() for p in build_models(get_config(arch=arch))[1].parameters()
    )
    report = train_gan(cfg, faces, tmp_path, seed=3, device=torch.device("cpu"))
    assert all(np.isfinite(row["r1"]) and np.isfinite(row["loss_d"]) for row in report.history)
    assert load_generator(tmp_path)(torch.randn(2, cfg.style_dim)).shape == (2, 3, 8, 8)
    with pytest.raises(ConfigError, match="d_highpass"):
        get_config(d_highpass=-1.0)


def _history_distances(report: object, first_step: int) -> dict[int, float]:
    """Logged statistics distances by step count (``step + 1``), from ``first_step`` on."""
    rows = report.history  # type: ignore[attr-defined]
    return {
        int(r["step"]) + 1: r["stats_distance"]
        for r in rows
        if "stats_distance" in r and r["step"] + 1 >= first_step
    }


def test_closest_stats_keeps_the_snapshot_nearest_the_training_faces(
    faces: np.ndarray, tmp_path: Path
) -> None:
    """Of the snapshots from half-way on, the saved generator is the one with the smallest logged distance."""
    cpu = torch.device("cpu")
    cfg = get_config(steps=12, stats_every=2, snapshot="closest_stats", snapshot_from=0.5)
    kept = train_gan(cfg, faces, tmp_path / "kept", seed=5, device=cpu)
    last = train_gan(get_config(steps=12, stats_every=2), faces, tmp_path / "last", seed=5, device=cpu)
    candidates = _history_distances(kept, first_step=6)
    assert sorted(candidates) == [6, 8, 10, 12]
    assert kept.snapshot_step == min(candidates, key=candidates.get)
    assert kept.snapshot_distance == min(candidates.values())
    assert last.snapshot_step == 12 and last.snapshot_distance is None
    assert _history_distances(kept, 0) == _history_distances(last, 0)  # selection never changes training
    # The saved generator is the EMA at the kept step: a run that stops there saves the same weights.
    short = get_config(steps=kept.snapshot_step, stats_every=2)
    train_gan(short, faces, tmp_path / "short", seed=5, device=cpu)
    a, b = load_generator(tmp_path / "kept").state_dict(), load_generator(tmp_path / "short").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_closest_stats_survives_a_resume(faces: np.ndarray, tmp_path: Path) -> None:
    """The kept snapshot is in the banked state: stopped at 6 and resumed to 12, the same one is saved."""
    cpu, work = torch.device("cpu"), tmp_path / "work"
    cfg = {"stats_every": 2, "snapshot": "closest_stats", "snapshot_from": 0.25}
    whole = train_gan(get_config(steps=12, **cfg), faces, tmp_path / "whole", seed=5, device=cpu)
    train_gan(get_config(steps=6, **cfg), faces, tmp_path / "a", seed=5, device=cpu, work_dir=work)
    rest = train_gan(get_config(steps=12, **cfg), faces, tmp_path / "b", seed=5, device=cpu, work_dir=work)
    assert rest.resumed_from_step == 6
    assert (rest.snapshot_step, rest.snapshot_distance) == (whole.snapshot_step, whole.snapshot_distance)
    a, b = load_generator(tmp_path / "whole").state_dict(), load_generator(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # With selection on, the statistics schedule picks the saved generator: another one is another recipe.
    other = train_gan(
        get_config(steps=12, **{**cfg, "stats_every": 3}),
        faces,
        tmp_path / "c",
        seed=5,
        device=cpu,
        work_dir=work,
    )
    assert other.resumed_from_step == 0


@pytest.mark.parametrize(
    ("key", "value"), [("snapshot", "best"), ("snapshot_from", 1.5), ("snapshot_from", "half")]
)
def test_bad_snapshot_settings_are_named(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"`{key}`"):
        get_config(**{key: value})


def test_more_steps_forget_a_kept_snapshot_from_before_the_new_half_way_mark(
    faces: np.ndarray, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Raising `steps` still resumes, but a snapshot kept from before the new eligibility mark is dropped."""
    cpu, work = torch.device("cpu"), tmp_path / "work"
    cfg = {"stats_every": 2, "snapshot": "closest_stats", "snapshot_from": 0.5}
    first = train_gan(get_config(steps=8, **cfg), faces, tmp_path / "a", seed=5, device=cpu, work_dir=work)
    assert 4 <= first.snapshot_step <= 8
    more = train_gan(get_config(steps=20, **cfg), faces, tmp_path / "b", seed=5, device=cpu, work_dir=work)
    assert more.resumed_from_step == 8 and more.snapshot_step >= 10
    assert "forgetting the kept snapshot" in caplog.text
    seen = {int(r["step"]) + 1: r["stats_distance"] for r in more.history if "stats_distance" in r}
    assert more.snapshot_distance == min(d for step, d in seen.items() if step >= 10)
