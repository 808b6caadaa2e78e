"""Train the demo GANs (StyleGAN2-type and DCGAN-type) on the real training faces and save them.

Loss: the non-saturating logistic GAN loss with lazy R1 regularisation of the discriminator (Mescheder et al.
2018; StyleGAN2's lazy schedule: R1 every ``r1_every`` D steps, scaled by ``r1_every``, with Adam's lr/betas
adjusted by ``c = r1_every / (r1_every + 1)``). Path-length regularisation is left out: at 32 px and < 1M
parameters it costs a second G pass per interval for no visible gain. The saved generator is the EMA of the
trained one, as in StyleGAN2 and DCGAN practice.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.demo.faces import jpeg_roundtrip
from pipeline.demo.gan_sampling import GAN_ARCHS, sample_gan
from pipeline.demo.resume import TrainingCheckpoint, recipe_key, step_bar
from pipeline.demo.statistics import relative_gaps, statistics_distance, summary_statistics
from pipeline.device import Precision, autocast, parse_precision, seed_everything
from pipeline.errors import ConfigError, InputDataError, TrainingDivergedError
from pipeline.imaging import from_model, to_model
from pipeline.models.checkpoint import save_checkpoint
from pipeline.models.gan.dcgan import DCGANDiscriminator, DCGANGenerator
from pipeline.models.gan.highpass import HighPassView
from pipeline.models.gan.stylegan2 import Discriminator, Generator
from pipeline.plots import save_image_grid

__all__ = [
    "GanTrainConfig",
    "GanTrainReport",
    "TrainingDivergedError",
    "build_models",
    "train_gan",
]

log = logging.getLogger(__name__)


Arch = Literal["stylegan2", "dcgan"]
Snapshot = Literal["last", "closest_stats"]
_SNAPSHOTS = ("last", "closest_stats")


@dataclass(frozen=True, kw_only=True)
class GanTrainConfig:
    """How to build and train one demo GAN.

    Args:
        arch (`str`): `"stylegan2"` or `"dcgan"`.
        resolution (`int`): image side (power of two).
        style_dim (`int`, defaults to 128): z/w width (z width of the DCGAN).
        n_mlp (`int`, defaults to 4): StyleGAN2 mapping depth.
        channel_multiplier (`float`, defaults to 1), channel_base (`int`, defaults to 1024): StyleGAN2 channel
            table, width(r) = min(max_channels, base * multiplier / r) (see `channels_for`); the defaults
            give 64/64/64/32 channels at 4/8/16/32 px, half the cost of 64 everywhere (rosinality: 16384, 2).
        max_channels (`int`, defaults to 64): widest generator layer.
        d_max_channels (`int`, defaults to 64): widest discriminator layer.
        d_highpass (`float`, defaults to 0): when > 0 the discriminator reads the image and this weight x
            its Laplacian (`pipeline.models.gan.highpass.HighPassView`, a frequency-aware discriminator);
            0 = RGB.
            Medium recipes at 2,000 steps (README "Results", 2026-12-05), fakes' high-frequency energy gap vs
            the training faces: DCGAN -41% (0) vs -16% (2), StyleGAN -45% vs -16%.
        base_channels (`int`, defaults to 16): DCGAN width at full resolution (doubles per halving).
        mixing_prob (`float`, defaults to 0.5): StyleGAN2 style-mixing probability.
        steps (`int`), batch_size (`int`), lr (`float`), betas (`tuple[float, float]`): optimisation.
        r1_gamma (`float`, defaults to 1.0): R1 weight (gamma / 2 * ||grad D(x)||^2).
        r1_every (`int`, defaults to 16): lazy R1 interval in D steps.
        ema_decay (`float`, defaults to 0.999): generator EMA decay per step.
        precision (`str`, defaults to `"fp32"`): autocast dtype for the forward passes (R1 stays float32).
        log_every (`int`, defaults to 10): dvclive/tqdm logging interval in steps.
        stats_every (`int`, defaults to 250): every this many steps, 256 samples of the EMA generator go
            through the demo's JPEG codec and their gate statistics (`GATE_STATISTICS`) are logged beside
            the training faces' (``stats/*``), so a run shows when its samples reach real-face statistics.
        jpeg_quality (`int`, defaults to 75): the codec of those logged statistics (``demo.jpeg_quality``).
        snapshot (`str`, defaults to `"last"`): which EMA generator is saved. `"closest_stats"`: of the
            snapshots whose statistics were logged from ``snapshot_from * steps`` on (and the last one), the
            one whose samples sit closest to the training faces (`statistics_distance`: the largest gate gap),
            as StyleGAN's authors keep the best-FID snapshot rather than the last. The demo's small GANs
            oscillate: on the full profile `stylegan`'s high-frequency gap went -7% at 3,000 steps, -24% at
            4,250, -17% at 5,000 (README "Results"). Selection uses training faces only, never the gate's
            held-out ones; with it, ``stats_every`` and ``jpeg_quality`` shape the result and so join the
            recipe that a banked state must match.
        snapshot_from (`float`, defaults to 0.5): the fraction of ``steps`` before which no snapshot is kept
            (early generators can match pixel statistics while still drawing poor faces). A run resumed with
            more ``steps`` keeps its banked snapshot only if it is still past that mark; otherwise it chooses
            among the snapshots from the resume on (a warning says so).
    """

    arch: Arch
    resolution: int
    style_dim: int = 128
    n_mlp: int = 4
    channel_multiplier: float = 1.0
    channel_base: int = 1024
    max_channels: int = 64
    d_max_channels: int = 64
    d_highpass: float = 0.0
    base_channels: int = 16
    mixing_prob: float = 0.5
    steps: int = 3000
    batch_size: int = 32
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 1.0
    r1_every: int = 16
    ema_decay: float = 0.999
    precision: Precision = "fp32"
    log_every: int = 10
    stats_every: int = 250
    jpeg_quality: int = 75
    snapshot: Snapshot = "last"
    snapshot_from: float = 0.5

    def __post_init__(self) -> None:
        if self.arch not in GAN_ARCHS:
            raise ConfigError(f"`arch` must be one of {GAN_ARCHS}. Got {self.arch!r} instead.")
        r = self.resolution
        if not isinstance(r, int) or r < 8 or r & (r - 1):
            raise ConfigError(f"`resolution` must be a power of two >= 8. Got {r!r} instead.")
        for key in (
            "steps",
            "batch_size",
            "r1_every",
            "style_dim",
            "n_mlp",
            "max_channels",
            "log_every",
            "stats_every",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"`{key}` must be >= 1. Got {getattr(self, key)!r} instead.")
        if not (isinstance(self.d_highpass, int | float) and self.d_highpass >= 0):
            raise ConfigError(f"`d_highpass` must be a number >= 0. Got {self.d_highpass!r} instead.")
        if self.lr <= 0 or self.r1_gamma < 0:
            raise ConfigError(f"`lr` must be > 0 and `r1_gamma` >= 0. Got {self.lr!r}, {self.r1_gamma!r}.")
        if not 0.0 <= self.ema_decay < 1.0 or not 0.0 <= self.mixing_prob <= 1.0:
            raise ConfigError(
                f"`ema_decay` must be in [0, 1) and `mixing_prob` in [0, 1]. Got {self.ema_decay!r},"
                f" {self.mixing_prob!r}."
            )
        object.__setattr__(self, "betas", tuple(self.betas))  # params.yaml gives a list
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"`betas` must be two numbers in [0, 1). Got {self.betas!r} instead.")
        parse_precision(self.precision)
        if self.snapshot not in _SNAPSHOTS:
            raise ConfigError(f"`snapshot` must be one of {_SNAPSHOTS}. Got {self.snapshot!r} instead.")
        if not (isinstance(self.snapshot_from, int | float) and 0.0 <= self.snapshot_from <= 1.0):
            raise ConfigError(f"`snapshot_from` must be in [0, 1]. Got {self.snapshot_from!r} instead.")

    def generator_kwargs(self) -> dict[str, Any]:
        """Constructor kwargs of the generator: what `save_checkpoint` records as its config."""
        if self.arch == "stylegan2":
            return {
                "size": self.resolution,
                "style_dim": self.style_dim,
                "n_mlp": self.n_mlp,
                "channel_multiplier": self.channel_multiplier,
                "channel_base": self.channel_base,
                "max_channels": self.max_channels,
            }
        return {
            "size": self.resolution,
            "z_dim": self.style_dim,
            "base_channels": self.base_channels,
            "max_channels": self.max_channels,
        }


@dataclass(frozen=True, kw_only=True)
class GanTrainReport:
    """What a training run did: sizes, speed, final losses, and pixel statistics of samples vs reals
    (`pipeline.demo.statistics.summary_statistics`: the gate statistics on [0, 1])."""

    arch: str
    steps: int
    g_params: int
    d_params: int
    seconds: float
    s_per_step: float
    final: dict[str, float]
    sample_stats: dict[str, float]
    real_stats: dict[str, float]
    out_dir: str
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    snapshot_step: int = 0
    snapshot_distance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_models(config: GanTrainConfig) -> tuple[nn.Module, nn.Module]:
    """Fresh (generator, discriminator) for ``config``; the discriminator takes RGB images either way (with
    ``d_highpass`` its high-pass view sits inside it, so R1 penalises the gradient w.r.t. the image)."""
    in_channels = 6 if config.d_highpass > 0 else 3
    if config.arch == "stylegan2":
        g: nn.Module = Generator(**config.generator_kwargs())
        d: nn.Module = Discriminator(
            config.resolution,
            channel_multiplier=config.channel_multiplier,
            channel_base=config.channel_base,
            max_channels=config.d_max_channels,
            in_channels=in_channels,
        )
    else:
        g = DCGANGenerator(**config.generator_kwargs())
        d = DCGANDiscriminator(
            config.resolution,
            base_channels=config.base_channels,
            max_channels=config.d_max_channels,
            in_channels=in_channels,
        )
    if config.d_highpass > 0:
        d = nn.Sequential(HighPassView(config.d_highpass), d)
    return g, d


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _generate(g: nn.Module, z: torch.Tensor, mixing_prob: float, rng: np.random.Generator) -> torch.Tensor:
    """Training-time sample: StyleGAN2 with style mixing and random noise; DCGAN plain."""
    if not isinstance(g, Generator):
        return g(z)
    w = g.mapping(z)
    w_plus = w[:, None].expand(-1, g.n_latent, -1)
    if mixing_prob > 0 and rng.random() < mixing_prob:
        w2 = g.mapping(torch.randn_like(z))
        cut = int(rng.integers(1, g.n_latent))
        w_plus = torch.cat([w_plus[:, :cut], w2[:, None].expand(-1, g.n_latent - cut, -1)], 1)
    return g.synthesis(w_plus, noise_mode="random")


@torch.no_grad()
def _sample_statistics(g: nn.Module, z: torch.Tensor, jpeg_quality: int) -> dict[str, float]:
    """Gate statistics of ``g``'s samples for ``z`` after the demo's JPEG codec (random noise, psi = 1).

    The noise inputs draw from a forked RNG: logging must not change the training run it observes."""
    with torch.random.fork_rng(devices=[]):
        x = g(z, noise_mode="random") if isinstance(g, Generator) else g(z)
    return summary_statistics(jpeg_roundtrip(from_model(x), jpeg_quality))


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Lerp ``ema`` towards ``model`` outside autograd: an in-place lerp with a grad-requiring ``model``
    parameter would give every EMA weight a grad_fn chaining back through all earlier steps."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


# Config keys that only change what is logged (statistics draw from a forked RNG): a run differing from a
# saved state only in these resumes it, as `pipeline.demo.dm_training` does for its sampling-only keys.
_LOGGING_ONLY = frozenset({"log_every", "stats_every", "jpeg_quality"})


def _not_in_recipe(config: GanTrainConfig) -> frozenset[str]:
    """Keys that never change the saved weights: logging, and with ``snapshot="last"`` the statistics
    schedule and ``snapshot_from`` (with ``"closest_stats"`` they pick the saved generator)."""
    return _LOGGING_ONLY | {"snapshot_from"} if config.snapshot == "last" else frozenset({"log_every"})


def _training_code() -> list[Any]:
    """Modules whose source shapes a run: a saved training state is resumed only under the same code."""
    import sys

    from pipeline.demo import statistics
    from pipeline.models.gan import dcgan, highpass, stylegan2

    return [sys.modules[__name__], statistics, dcgan, highpass, stylegan2]


def train_gan(
    config: GanTrainConfig,
    images: np.ndarray,
    out_dir: Path,
    *,
    seed: int,
    device: torch.device,
    live_dir: Path | None = None,
    work_dir: Path | None = None,
    checkpoint_seconds: float = 300.0,
) -> GanTrainReport:
    """Train a GAN on ``images`` (uint8 `(N, 3, H, W)`) and save its EMA generator + ``samples.png`` in
    ``out_dir``. With ``work_dir`` the run saves its state there and a run of the same recipe resumes from it
    (`pipeline.demo.resume`, as `pipeline.demo.dm_training.train_dm`).

    Returns:
        `GanTrainReport`; ``report.json`` with the same content is written to ``out_dir`` too.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise InputDataError(f"`images` must be uint8 (N, 3, H, W). Got {images.dtype} {images.shape}.")
    if images.shape[2:] != (config.resolution, config.resolution):
        raise InputDataError(
            f"`images` are {images.shape[2]}x{images.shape[3]} but `resolution` is {config.resolution}."
        )
    if images.shape[0] < 2:
        raise InputDataError(f"need at least 2 training images, got {images.shape[0]}.")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    g, d = build_models(config)
    g, d = g.to(device).train(), d.to(device).train()
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    c = config.r1_every / (config.r1_every + 1)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(
        d.parameters(), lr=config.lr * c, betas=(config.betas[0] ** c, config.betas[1] ** c)
    )
    g_params, d_params = _n_params(g), _n_params(d)
    log.info(
        "training gan <arch=%s> <g_params=%d> <d_params=%d> <steps=%d>",
        config.arch,
        g_params,
        d_params,
        config.steps,
    )

    key = recipe_key(
        asdict(config), seed=seed, images=images, code=_training_code(), ignore=_not_in_recipe(config)
    )
    ckpt = TrainingCheckpoint(work_dir, key, every_seconds=checkpoint_seconds)
    state = ckpt.load(max_step=config.steps)
    if state is not None:
        ckpt.restore_live(live_dir)
    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, resume=state is not None)
        live.log_params({k: v for k, v in asdict(config).items() if not isinstance(v, tuple)})

    z_dim = config.style_dim
    bs = config.batch_size
    real_stats = summary_statistics(images[:2048])
    stats_z = torch.randn(256, z_dim, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    history: list[dict[str, float]] = []
    last: dict[str, float] = {}
    r1_val = float("nan")
    best: dict[str, Any] | None = None  # the kept snapshot: step, distance, EMA weights
    first_eligible = math.ceil(config.snapshot_from * config.steps)
    start, earlier_seconds = 0, 0.0
    stateful = {"g": g, "d": d, "g_ema": g_ema, "opt_g": opt_g, "opt_d": opt_d}
    if state is not None:
        for name, obj in stateful.items():
            obj.load_state_dict(state[name])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        history, last, r1_val = list(state["history"]), dict(state["last"]), float(state["r1"])
        best = state.get("best")
        if best is not None and best["step"] < first_eligible:
            # `steps` was raised since this state was banked: its kept snapshot is no longer from the eligible
            # part of the run, and the snapshots between the new half-way mark and here were not kept.
            log.warning(
                "forgetting the kept snapshot of step %d: snapshots count from step %d now (steps %d); the"
                " choice covers only the snapshots from here on",
                best["step"],
                first_eligible,
                config.steps,
            )
            best = None
        start, earlier_seconds = int(state["step"]), float(state["seconds"])

    def training_state(done: int) -> dict[str, Any]:
        return {
            "step": done,
            **{name: obj.state_dict() for name, obj in stateful.items()},
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "last": last,
            "r1": r1_val,
            "best": best,
            "seconds": earlier_seconds + time.perf_counter() - t0,
        }

    t0 = time.perf_counter()
    bar = step_bar(start, config.steps, f"train {config.arch}")
    for step in bar:
        idx = rng.integers(0, images.shape[0], size=bs)
        real = to_model(images[idx], device)
        flip = torch.from_numpy(rng.random(bs) < 0.5).to(device)
        real = torch.where(flip[:, None, None, None], real.flip(3), real)

        # 1. D step: non-saturating logistic loss, softplus(D(G(z))) + softplus(-D(x)).
        g.requires_grad_(False)
        d.requires_grad_(True)
        with autocast(device, config.precision):
            fake = _generate(g, torch.randn(bs, z_dim, device=device), config.mixing_prob, rng)
            d_loss = F.softplus(d(fake.detach())).mean() + F.softplus(-d(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        d_loss.float().backward()
        opt_d.step()

        # 2. Lazy R1 on reals: gamma/2 * E||grad_x D(x)||^2, scaled by the interval (float32, no autocast).
        if config.r1_gamma > 0 and step % config.r1_every == 0:
            real_r = real.detach().requires_grad_(True)
            out = d(real_r)
            (grad,) = torch.autograd.grad(out.sum(), real_r, create_graph=True)
            r1 = grad.pow(2).reshape(bs, -1).sum(1).mean()
            opt_d.zero_grad(set_to_none=True)
            (config.r1_gamma / 2 * r1 * config.r1_every + 0 * out[0, 0]).backward()
            opt_d.step()
            r1_val = float(r1.detach())

        # 3. G step: non-saturating loss softplus(-D(G(z))).
        g.requires_grad_(True)
        d.requires_grad_(False)
        with autocast(device, config.precision):
            fake = _generate(g, torch.randn(bs, z_dim, device=device), config.mixing_prob, rng)
            g_loss = F.softplus(-d(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.float().backward()
        opt_g.step()
        # EMA with ramp-up (as StyleGAN2's ema_rampup): early steps follow G closely, later ones average.
        _ema_update(g_ema, g, min(config.ema_decay, (step + 1) / (step + 10)))

        if step % config.log_every == 0 or step == config.steps - 1:
            elapsed = time.perf_counter() - t0
            last = {
                "step": float(step),
                "loss_d": float(d_loss.detach()),
                "loss_g": float(g_loss.detach()),
                "r1": r1_val,
                "img_per_s": (step + 1 - start) * bs / max(elapsed, 1e-9),
            }
            if not (math.isfinite(last["loss_d"]) and math.isfinite(last["loss_g"])):
                raise TrainingDivergedError(f"GAN training diverged at step {step}: {last}")
            history.append(last)
            bar.set_postfix(
                d=f"{last['loss_d']:.3f}", g=f"{last['loss_g']:.3f}", ips=f"{last['img_per_s']:.0f}"
            )
            if live is not None:
                live.step = step
                for k in ("loss_d", "loss_g", "r1", "img_per_s"):
                    live.log_metric(f"train/{k}", last[k])
                live.make_summary()
        if (step + 1) % config.stats_every == 0 or step == config.steps - 1:
            stats = _sample_statistics(g_ema, stats_z, config.jpeg_quality)
            if not history or history[-1]["step"] != step:
                history.append({"step": float(step)})
            distance = statistics_distance(stats, real_stats)
            history[-1].update({f"stats_{k}": v for k, v in stats.items()} | {"stats_distance": distance})
            log.info(
                "sample statistics <step=%d> <distance=%.4f> %s <real=%s>",
                step + 1,
                distance,
                stats,
                real_stats,
            )
            eligible = step + 1 >= first_eligible or step == config.steps - 1
            closer = best is None or distance < best["distance"]
            if config.snapshot == "closest_stats" and eligible and closer:
                ema_state = {k: v.detach().cpu().clone() for k, v in g_ema.state_dict().items()}
                best = {"step": step + 1, "distance": distance, "g_ema": ema_state}
            if live is not None:
                live.step = step
                for k, gap in relative_gaps(stats, real_stats).items():
                    live.log_metric(f"stats/{k}", stats[k])
                    live.log_metric(f"stats/{k}_gap", gap)
                live.log_metric("stats/distance", distance)
        if ckpt.due() or step == config.steps - 1:
            ckpt.save(training_state(step + 1), live_dir)
    seconds = earlier_seconds + time.perf_counter() - t0
    if live is not None:
        live.end()

    snapshot_step, snapshot_distance = config.steps, None
    if best is not None:
        g_ema.load_state_dict(best["g_ema"])
        snapshot_step, snapshot_distance = int(best["step"]), float(best["distance"])
        log.info(
            "keeping the snapshot closest to the training faces <step=%d> <distance=%.4f>",
            snapshot_step,
            snapshot_distance,
        )
    out_dir = Path(out_dir)
    save_checkpoint(out_dir, g_ema.cpu(), kind=config.arch, config=config.generator_kwargs())
    samples = sample_gan(out_dir, 512, seed=seed, device=device)
    save_image_grid(samples[:64], out_dir / "samples.png")
    report = GanTrainReport(
        arch=config.arch,
        steps=config.steps,
        g_params=g_params,
        d_params=d_params,
        seconds=seconds,
        s_per_step=seconds / config.steps,
        final=last,
        sample_stats=summary_statistics(samples),
        real_stats=real_stats,
        out_dir=str(out_dir),
        history=history,
        resumed_from_step=start,
        snapshot_step=snapshot_step,
        snapshot_distance=snapshot_distance,
    )
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    log.info(
        "gan trained <arch=%s> <s_per_step=%.3f> <samples=%s>",
        config.arch,
        report.s_per_step,
        report.sample_stats,
    )
    return report
