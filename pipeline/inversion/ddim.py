"""DDIM inversion + DDIM reconstruction with a diffusers ``UNet2DModel`` (paper Sec. III-B2, DIRE).

For an image x0: deterministic DDIM inversion (eta = 0, paper Eq. 3) walks x0 -> x_T, then deterministic
DDIM sampling (Eq. 2) walks x_T -> x0' with the same UNet. Images the model generated itself come back
closer than real photos (the premise the detectors exploit).

Scheduler pair: `pipeline.models.dm.schedulers.build_ddim_schedulers` (the clip bound, ``set_alpha_to_one``
and the timestep spacings it allows are explained there).

Following diffusers' inversion pipelines, the inverse step to noise level t evaluates the UNet at t on
the current (less noisy) sample. Scheduler arithmetic is float32; only the UNet runs under autocast.

Epsilon scaling (``recon.ddim.eps_scale``): both chains divide the noise estimate by the lambda the model's
own sampler used for its fakes (`pipeline.demo.dm_sampling.saved_eps_scale`: the demo ``adm`` 1.005 in the
medium and full profiles; 1, i.e. none, for a checkpoint not trained here), so a generator is inverted and
reconstructed with the sampler that made its images. The scaled estimate is taken in the noise estimate the
scheduler's step derives, at the noise level that step converts with (`step_alpha_bar`).

Model folders: a pipeline-style folder (``unet/`` + ``scheduler/scheduler_config.json``, what
`pipeline.demo.dm_training.train_dm` writes) or a model folder with the UNet at its root and a
``scheduler_config.json`` beside it, e.g. a download of the hub model ``google/ddpm-ema-celebahq-256``
(256 px; set ``data.resolution: 256``). ADM / guided-diffusion ``.pt`` checkpoints (the paper's model)
cannot be loaded by diffusers and are not supported.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, UNet2DModel

from pipeline.demo.dm_sampling import saved_eps_scale, scale_epsilon
from pipeline.device import autocast_dtype, parse_precision, resolve_device
from pipeline.errors import ConfigError, ModelLoadError, MultireconError
from pipeline.imaging import to_model
from pipeline.inversion.report import summarize_recon_store
from pipeline.models.checkpoint import weights_hash
from pipeline.models.dm.schedulers import SCHEDULER_OVERRIDES, build_ddim_schedulers
from pipeline.progress import progress as progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "SCHEDULER_OVERRIDES",
    "DDIMReconstructor",
    "DdimModel",
    "NonFiniteReconstructionError",
    "build_ddim_schedulers",
    "load_ddim_model",
    "locate_model_parts",
    "own_sampler_agreement",
    "resolve_eps_scale",
    "run_ddim_reconstruction",
    "step_alpha_bar",
]

logger = logging.getLogger(__name__)

_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class NonFiniteReconstructionError(MultireconError):
    """A reconstruction stayed NaN/Inf even in float32: the model or the input is broken."""


def locate_model_parts(model_dir: str | Path) -> tuple[Path, Path]:
    """Find ``(unet_folder, scheduler_config_json)`` in either supported layout, or raise `ModelLoadError`."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelLoadError(f"diffusion model folder {str(root)!r} does not exist (or is not a folder).")
    if (root / "unet").is_dir():
        unet_dir, sched = root / "unet", root / "scheduler" / "scheduler_config.json"
        layout = "pipeline-style (unet/ + scheduler/)"
    else:
        unet_dir, sched = root, root / "scheduler_config.json"
        layout = "model folder (config.json + scheduler_config.json at the root)"
    missing = [str(p) for p in (unet_dir / "config.json", sched) if not p.is_file()]
    if not any((unet_dir / w).is_file() for w in _WEIGHT_FILES):
        missing.append(f"{unet_dir}/{_WEIGHT_FILES[0]} (or .bin)")
    if missing:
        raise ModelLoadError(
            f"diffusion model folder {str(root)!r} read as a {layout} lacks: {', '.join(missing)}."
        )
    return unet_dir, sched


def _check_unet_config(unet_dir: Path, resolution: int | None) -> dict[str, Any]:
    """Reject conditional, wrong-channel or wrong-size UNets from config.json alone, before any weights."""
    path = unet_dir / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"UNet config {str(path)!r} is not readable JSON: {exc}.") from exc
    cls = cfg.get("_class_name")
    if cls != "UNet2DModel":
        raise ModelLoadError(
            f"UNet config {str(path)!r} describes a {cls!r}; DDIM reconstruction needs an unconditional "
            "'UNet2DModel' (text/class-conditional UNets are not supported)."
        )
    if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
        raise ModelLoadError(
            f"UNet config {str(path)!r} is class-conditional; an unconditional UNet is needed."
        )
    for key in ("in_channels", "out_channels"):
        if cfg.get(key, 3) != 3:
            raise ModelLoadError(
                f"UNet config {str(path)!r} has `{key}` = {cfg.get(key)}; a pixel-space RGB model needs 3 "
                "(latent-diffusion UNets cannot reconstruct pixels here)."
            )
    size = cfg.get("sample_size")
    sizes = tuple(size) if isinstance(size, list | tuple) else (size, size)
    if resolution is not None and sizes != (resolution, resolution):
        raise ModelLoadError(
            f"UNet config {str(path)!r} has `sample_size` = {size}, but `data.resolution` is {resolution}."
        )
    return cfg


@dataclass(frozen=True, kw_only=True)
class DdimModel:
    """A validated, loaded diffusion model and its DDIM scheduler pair."""

    unet: UNet2DModel
    scheduler: DDIMScheduler
    inverse_scheduler: DDIMInverseScheduler
    model_dir: Path
    unet_dir: Path
    weights_hash: str
    scheduler_source: dict[str, Any] = field(default_factory=dict)


def _warn_if_sampled_differently(saved: dict[str, Any], used: DDIMScheduler, path: Path) -> None:
    """A model saved with a DDIM sampler made its fakes with those clip settings; say so if recon differs."""
    if saved.get("_class_name") != "DDIMScheduler":
        return
    theirs = (bool(saved.get("clip_sample", False)), float(saved.get("clip_sample_range", 1.0)))
    ours = (bool(used.config.clip_sample), float(used.config.clip_sample_range))
    if theirs != ours:
        logger.warning(
            "reconstruction clips x0 with (clip_sample, range) = %s but the model's own DDIM sampler in %r"
            " uses %s: its fakes were not sampled with the reconstruction's settings"
            " (recon.ddim.clip_sample*)",
            ours,
            str(path),
            theirs,
        )


def resolve_eps_scale(eps_scale: float | str, model_dir: str | Path) -> float:
    """``recon.ddim.eps_scale`` as a number: ``"model"`` is the model's own sampling lambda
    (`saved_eps_scale`), a number is used as given (1 = no scaling); a different lambda than the model's
    sampler is logged, since its fakes were then not drawn with the reconstruction's settings."""
    own = saved_eps_scale(model_dir)
    if eps_scale == "model":
        return own
    try:
        value = float(eps_scale)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.5 <= value <= 2.0:
        raise ConfigError(
            "`recon.ddim.eps_scale` must be 'model' or a number in [0.5, 2] (1 = off). "
            f"Got {eps_scale!r} instead."
        )
    if value != own:
        logger.warning(
            "reconstruction scales epsilon by 1/%s but the model's own sampler in %r uses 1/%s: its fakes"
            " were not sampled with the reconstruction's settings (recon.ddim.eps_scale)",
            value,
            str(model_dir),
            own,
        )
    return value


_NOT_SETTINGS = ("_class_name", "_diffusers_version")


def own_sampler_agreement(model: DdimModel, eps_scale: float) -> dict[str, Any]:
    """How the reconstruction's settings compare with the model's own sampler, for the stage report.

    The model folder's saved scheduler config is the sampler its fakes came from (`train_dm` saves the DDIM
    sampler it samples with); ``same_scheduler_config`` is None when that sampler is not DDIM (e.g. a hub
    model's DDPM config), else whether every setting matches the forward scheduler used here.
    ``sample_steps`` is None without ``train_report.json``: the step count is a run argument, not compared.
    """
    saved = model.scheduler_source
    cls = saved.get("_class_name")
    used = dict(model.scheduler.config)
    differing: list[str] = []
    if cls == "DDIMScheduler":
        differing = sorted(k for k in saved if k not in _NOT_SETTINGS and saved[k] != used.get(k))
    own_eps = saved_eps_scale(model.model_dir)
    report_path = model.model_dir / "train_report.json"
    steps = None
    if report_path.is_file():
        steps = json.loads(report_path.read_text()).get("config", {}).get("sample_steps")
    return {
        "scheduler": cls,
        "same_scheduler_config": (not differing) if cls == "DDIMScheduler" else None,
        "differing_settings": differing,
        "eps_scale": own_eps,
        "same_eps_scale": own_eps == eps_scale,
        "sample_steps": steps,
    }


def step_alpha_bar(scheduler: DDIMScheduler | DDIMInverseScheduler, t: torch.Tensor | int) -> torch.Tensor:
    """The alpha_bar with which ``scheduler.step(output, t, x)`` turns the model output into a noise estimate.

    The forward step converts at t. The inverse step to level t converts at the level it starts from, one
    stride below (``initial_alpha_cumprod`` below 0), as diffusers' ``DDIMInverseScheduler.step`` does
    (0.42.1; `tests/test_ddim_eps_scale.py` checks the implied estimate, so a change there fails a test).
    """
    t = int(t)
    if isinstance(scheduler, DDIMInverseScheduler):
        cfg = scheduler.config
        src = min(t - cfg.num_train_timesteps // scheduler.num_inference_steps, cfg.num_train_timesteps - 1)
        return scheduler.alphas_cumprod[src] if src >= 0 else torch.as_tensor(scheduler.initial_alpha_cumprod)
    return scheduler.alphas_cumprod[t]


def load_ddim_model(
    model_dir: str | Path,
    *,
    resolution: int | None = None,
    expected_hash: str | None = None,
    clip_sample: bool = True,
    clip_sample_range: float = 1.0,
) -> DdimModel:
    """Validate a diffusers model folder, then load it (CPU, float32, eval mode).

    Every check that can fail (layout, UNet kind, channels, ``sample_size`` vs ``resolution``, scheduler
    settings and prediction type, weight hash) runs before the weights are read, and errors name the path and
    the problem.

    Args:
        model_dir (`str | Path`): pipeline-style or model-style folder (see the module docstring).
        resolution (`int`, *optional*): required ``sample_size`` (``data.resolution``); None skips the check.
        expected_hash (`str`, *optional*): `weights_hash` of the UNet folder the caller expects.
        clip_sample (`bool`, defaults to True), clip_sample_range (`float`, defaults to 1.0): see
            `build_ddim_schedulers`.
    """
    root = Path(model_dir)
    unet_dir, sched_path = locate_model_parts(root)
    _check_unet_config(unet_dir, resolution)
    try:
        sched_cfg = json.loads(sched_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"scheduler config {str(sched_path)!r} is not readable JSON: {exc}.") from exc
    if sched_cfg.get("prediction_type") == "sample":
        raise ModelLoadError(
            f"scheduler config {str(sched_path)!r}: `prediction_type` = 'sample' (an x0-predicting model)"
            " cannot be DDIM-inverted: inversion starts at the clean image (alpha_bar = 1), where the noise"
            " estimate such a model implies, (x - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar), divides by zero."
            " An epsilon or v_prediction model is needed."
        )
    scheduler, inverse = build_ddim_schedulers(
        sched_cfg,
        clip_sample=clip_sample,
        clip_sample_range=clip_sample_range,
        source=f"scheduler config {str(sched_path)!r}",
    )
    _warn_if_sampled_differently(sched_cfg, scheduler, sched_path)
    digest = weights_hash(unet_dir)
    if expected_hash is not None and digest != expected_hash:
        raise ModelLoadError(
            f"UNet weights in {str(unet_dir)!r} hash to {digest[:16]}..., expected {expected_hash[:16]}...; "
            "the model changed since the hash was recorded."
        )
    try:
        unet = UNet2DModel.from_pretrained(str(unet_dir), low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"diffusers could not load the UNet in {str(unet_dir)!r}: {exc}") from exc
    bad = [n for n, p in unet.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ModelLoadError(f"UNet weights in {str(unet_dir)!r} contain NaN/Inf, e.g. in {bad[:3]}.")
    unet.eval().requires_grad_(False)
    return DdimModel(
        unet=unet,
        scheduler=scheduler,
        inverse_scheduler=inverse,
        model_dir=root,
        unet_dir=unet_dir,
        weights_hash=digest,
        scheduler_source=sched_cfg,
    )


def _scheduler_json(s: DDIMScheduler | DDIMInverseScheduler) -> dict[str, Any]:
    return json.loads(s.to_json_string())


class DDIMReconstructor:
    """Batched DDIM inversion + reconstruction, the reconstructor callable of the cache writer.

    Args:
        model_dir (`str | Path`): diffusers model folder (validated by `load_ddim_model`).
        steps (`int`): DDIM steps of each direction (``recon.steps``); 2 * steps UNet calls per image.
        batch_size (`int`, defaults to 32): images per UNet call.
        device (`str`, defaults to `"auto"`): see `pipeline.device.resolve_device`.
        precision (`str`, defaults to `"fp32"`): ``fp32 | bf16 | fp16 | auto``; reduced precision is UNet
            autocast only, and a batch that comes out non-finite is redone in float32.
        compile (`bool`, defaults to False): wrap the UNet in ``torch.compile`` (slow first call).
        channels_last (`bool`, defaults to True): channels-last memory format (faster convs on CPU).
        resolution (`int`, *optional*): required model ``sample_size`` (``data.resolution``).
        expected_hash (`str`, *optional*): required UNet weight hash.
        clip_sample (`bool`, defaults to True): clip predicted x0 in both chains (``recon.ddim.clip_sample``).
        clip_sample_range (`float`, defaults to 1.0): its bound (``recon.ddim.clip_sample_range``).
        eps_scale (`float | str`, defaults to `"model"`): epsilon-scaling lambda of both chains
            (``recon.ddim.eps_scale``; module docstring): ``"model"`` = the model's own sampler's, a number
            as given, 1 = none.

    Call with uint8 `(B, 3, H, W)`; returns float32 `(B, 3, H, W)` reconstructions in model units
    `[-1, 1]`, unclipped. Deterministic for a given input (eta = 0, no noise is drawn).
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        steps: int,
        batch_size: int = 32,
        device: str = "auto",
        precision: str = "fp32",
        compile: bool = False,
        channels_last: bool = True,
        resolution: int | None = None,
        expected_hash: str | None = None,
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        eps_scale: float | str = "model",
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"`recon.batch_size` must be a positive int. Got {batch_size!r} instead.")
        self.precision = parse_precision(precision)
        self.device = resolve_device(device)
        self.model = load_ddim_model(
            model_dir,
            resolution=resolution,
            expected_hash=expected_hash,
            clip_sample=clip_sample,
            clip_sample_range=clip_sample_range,
        )
        t_max = self.model.scheduler.config.num_train_timesteps
        if not isinstance(steps, int) or not 1 <= steps <= t_max:
            raise ConfigError(f"`recon.steps` must be an int in [1, {t_max}]. Got {steps!r} instead.")
        self.steps = steps
        self.eps_scale = resolve_eps_scale(eps_scale, self.model.model_dir)
        self._prediction_type = str(self.model.scheduler.config.prediction_type)
        self.batch_size = batch_size
        self.resolution = int(self.model.unet.config.sample_size)
        dtype = autocast_dtype(self.device, self.precision)
        if (
            dtype == torch.bfloat16
            and self.device.type == "cpu"
            and not torch.ops.mkldnn._is_mkldnn_bf16_supported()
        ):
            logger.warning(
                "bf16 autocast requested but this CPU lacks native bf16 (AVX512-BF16/AMX): convolutions fall "
                "back to a slow path, ~5x slower than fp32 here <precision=%s>",
                self.precision,
            )
        self.channels_last = channels_last
        self.compile = compile
        self.nonfinite_retries = 0
        self.scheduler = self.model.scheduler
        self.inverse_scheduler = self.model.inverse_scheduler
        self.scheduler.set_timesteps(steps)
        self.inverse_scheduler.set_timesteps(steps)
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        unet: Any = self.model.unet.to(self.device, memory_format=self._memory_format)
        self.unet: Callable[..., Any] = torch.compile(unet) if compile else unet

    # -- the loop ---------------------------------------------------------------------------------
    def _loop(
        self, x: torch.Tensor, scheduler: DDIMScheduler | DDIMInverseScheduler, dtype: torch.dtype | None
    ) -> torch.Tensor:
        """Run one deterministic DDIM chain: UNet (maybe autocast) then float32 ``scheduler.step``.

        ``scheduler`` is the forward scheduler (x_T -> x0, Eq. 2) or the inverse one (x0 -> x_T, Eq. 3);
        both take the UNet's output at timestep t (epsilon or v: the scheduler config's ``prediction_type``),
        epsilon-scaled when ``eps_scale`` != 1, and the float32 sample.
        """
        x = x.to(self.device, torch.float32)
        for t in scheduler.timesteps:
            inp = x.contiguous(memory_format=self._memory_format)
            if dtype is None:
                out = self.unet(inp, t, return_dict=False)[0]
            else:
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    out = self.unet(inp, t, return_dict=False)[0]
            out = out.float()
            if self.eps_scale != 1.0:
                alpha_bar = step_alpha_bar(scheduler, t).to(x.device)
                out = scale_epsilon(out, x, alpha_bar, self._prediction_type, self.eps_scale)
            x = scheduler.step(out, t, x, return_dict=False)[0]
        return x

    def _run(self, x: torch.Tensor, chains: tuple[DDIMScheduler | DDIMInverseScheduler, ...]) -> torch.Tensor:
        """Apply ``chains`` in order to ``x`` batch by batch, redoing non-finite batches in float32."""
        dtype = autocast_dtype(self.device, self.precision)
        outs = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                xb = x[start : start + self.batch_size]
                y = xb
                for sched in chains:
                    y = self._loop(y, sched, dtype)
                if not torch.isfinite(y).all():
                    if dtype is None:
                        raise NonFiniteReconstructionError(
                            f"DDIM reconstruction of a batch of {xb.shape[0]} images is NaN/Inf in float32 "
                            f"(model {str(self.model.model_dir)!r}, steps={self.steps})."
                        )
                    self.nonfinite_retries += 1
                    logger.warning(
                        "non-finite DDIM output under autocast, redoing in float32 <dtype=%s> <retries=%d>",
                        dtype,
                        self.nonfinite_retries,
                    )
                    y = xb
                    for sched in chains:
                        y = self._loop(y, sched, None)
                    if not torch.isfinite(y).all():
                        raise NonFiniteReconstructionError(
                            f"DDIM reconstruction stayed NaN/Inf after a float32 retry "
                            f"(model {str(self.model.model_dir)!r}, steps={self.steps})."
                        )
                outs.append(y.float().cpu())
        return torch.cat(outs) if outs else torch.empty_like(x, dtype=torch.float32, device="cpu")

    # -- public API -------------------------------------------------------------------------------
    def invert(self, x0: torch.Tensor) -> torch.Tensor:
        """DDIM inversion: float `(B, 3, H, W)` images in [-1, 1] -> x_T (float32, CPU)."""
        return self._run(x0, (self.inverse_scheduler,))

    def sample(self, x_t: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM sampling: x_T `(B, 3, H, W)` -> x0' (float32, CPU, unclipped)."""
        return self._run(x_t, (self.scheduler,))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 `(B, 3, H, W)` -> float32 `(B, 3, H, W)` reconstruction in [-1, 1] (unclipped)."""
        arr = np.asarray(batch)
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
            raise ConfigError(f"reconstructor input must be uint8 (B, 3, H, W). Got {arr.dtype} {arr.shape}.")
        if arr.shape[2:] != (self.resolution, self.resolution):
            raise ConfigError(
                f"image size {arr.shape[2:]} does not match the model's sample_size {self.resolution}."
            )
        x = to_model(arr)
        return self._run(x, (self.inverse_scheduler, self.scheduler)).numpy().astype(np.float32, copy=False)

    def provenance(self) -> dict[str, Any]:
        """What determines the output: recorded in the cache attributes and compared on reopen."""
        dtype = autocast_dtype(self.device, self.precision)
        import diffusers

        return {
            "kind": "ddim",
            "model": str(self.model.model_dir),
            "weights_hash": self.model.weights_hash,
            "scheduler": _scheduler_json(self.scheduler),
            "inverse_scheduler": _scheduler_json(self.inverse_scheduler),
            "steps": self.steps,
            "eta": 0.0,
            "eps_scale": self.eps_scale,
            "precision": self.precision,
            "autocast_dtype": None if dtype is None else str(dtype).removeprefix("torch."),
            "resolution": self.resolution,
            "diffusers_version": diffusers.__version__,
        }


class _Progress:
    """Wraps a reconstructor with an images/s + ETA bar (the cache writer's own bar counts shards)."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], total: int, enabled: bool) -> None:
        self.fn = fn
        self.bar = progress_bar(
            total=total, desc="ddim recon", unit="img", disable=not enabled, smoothing=0.1
        )

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.fn(batch)
        self.bar.update(len(batch))
        return out


def run_ddim_reconstruction(
    *,
    input_store: Path,
    out: Path,
    model_dir: Path,
    work_dir: Path,
    steps: int,
    batch_size: int,
    precision: str,
    compile: bool,
    device: str,
    resolution: int,
    chunk_images: int,
    shard_images: int,
    manifest: Path | None = None,
    stage: str | None = None,
    progress: bool = True,
    clip_sample: bool = True,
    clip_sample_range: float = 1.0,
    eps_scale: float | str = "model",
) -> dict[str, Any]:
    """Reconstruct a whole input cache into ``out`` (resumable) and return the stage report.

    The report holds images/s, float32 retries, and mean MSE (raw, as PSNR and over pixel variance) overall,
    per family and per generator when a manifest is given; ``premise_holds_*`` says whether the generator
    named like the model folder (``data/models/adm`` -> ``adm``) reconstructs best of all generators;
    ``own_sampler`` compares the reconstruction's settings with the model's own sampler
    (`own_sampler_agreement`).
    """
    from pipeline.cache import build_recon_store, open_store

    rec = DDIMReconstructor(
        model_dir, steps=steps, batch_size=batch_size, device=device, precision=precision,
        compile=compile, resolution=resolution, clip_sample=clip_sample, clip_sample_range=clip_sample_range,
        eps_scale=eps_scale,
    )  # fmt: skip
    n = int(open_store(Path(input_store))["image"].shape[0])
    wrapped = _Progress(rec, n, progress)
    t0 = time.perf_counter()
    built = build_recon_store(
        Path(input_store), Path(out), reconstruct=wrapped, provenance=rec.provenance(),
        work_dir=Path(work_dir), batch_size=batch_size, chunk_images=chunk_images,
        shard_images=shard_images, progress=False, stage=stage,
    )  # fmt: skip
    wrapped.bar.close()
    seconds = time.perf_counter() - t0
    summary = summarize_recon_store(
        Path(input_store), Path(out), manifest=manifest, own_generator=Path(model_dir).name
    )
    return {
        "images": summary["images"],
        "images_computed": built.images_computed,
        "seconds": round(seconds, 3),
        "images_per_s": round(built.images_per_s, 3),
        "nonfinite_retries": rec.nonfinite_retries,
        "steps": steps,
        "eps_scale": rec.eps_scale,
        "own_sampler": own_sampler_agreement(rec.model, rec.eps_scale),
        "precision": precision,
        "batch_size": batch_size,
        "own_generator": Path(model_dir).name,
        "provenance": rec.provenance(),
        **summary,  # mse, psnr, mse_over_var, premise_holds_* (pipeline.inversion.report)
    }
