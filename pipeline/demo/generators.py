"""One entry point for every demo generator: train it, sample it, whatever its family.

A generator spec in params (``demo.generators.<name>``) says its ``kind`` (stylegan2 | dcgan: GANs
in :mod:`pipeline.demo.gan_training`; ddpm | ldm: diffusion models in
:mod:`pipeline.demo.dm_training`), its ``family`` (gan | dm), its ``role`` in the paper protocol
(``train``: seen in training, like StyleGAN/ADM; ``test``: unseen) and its training options.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["GeneratorSpec", "build_config", "sample_generator", "train_generator"]

log = logging.getLogger(__name__)

GAN_KINDS = ("stylegan2", "dcgan")
DM_KINDS = ("ddpm", "ldm")
SPEC_FILE = "generator.json"


@dataclass(frozen=True, kw_only=True)
class GeneratorSpec:
    """A demo generator as declared in ``demo.generators.<name>``."""

    name: str
    kind: str
    family: str
    role: str
    train: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, name: str, spec: dict[str, Any]) -> GeneratorSpec:
        key = f"demo.generators.{name}"
        unknown = set(spec) - {"kind", "family", "role", "train"}
        if unknown:
            raise ConfigError(
                f"`{key}` has unknown keys {sorted(unknown)}; allowed: kind, family, role, train."
            )
        kind = spec.get("kind")
        if kind not in GAN_KINDS + DM_KINDS:
            raise ConfigError(f"`{key}.kind` must be one of {GAN_KINDS + DM_KINDS}. Got {kind!r} instead.")
        family = "gan" if kind in GAN_KINDS else "dm"
        # Required although implied: dvc.yaml picks the trainer a stage depends on by `family`.
        if "family" not in spec:
            raise ConfigError(f"`{key}.family` is missing: set it to {family!r} (kind {kind!r}).")
        if spec["family"] != family:
            raise ConfigError(f"`{key}.family` is {spec['family']!r} but kind {kind!r} is a {family}.")
        role = spec.get("role")
        if role not in ("train", "test"):
            raise ConfigError(f"`{key}.role` must be 'train' or 'test'. Got {role!r} instead.")
        return cls(name=name, kind=kind, family=family, role=role, train=dict(spec.get("train") or {}))


def build_config(config_cls: type, options: dict[str, Any], *, where: str, **fixed: Any) -> Any:
    """Instantiate a frozen config dataclass from params, naming unknown keys precisely."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(options) - names
    if unknown:
        raise ConfigError(
            f"`{where}` has unknown keys {sorted(unknown)}; allowed: {sorted(names - set(fixed))}."
        )
    return config_cls(**{**options, **fixed})


def train_generator(
    spec: GeneratorSpec,
    images: np.ndarray,
    out_dir: Path,
    *,
    resolution: int,
    seed: int,
    device: torch.device,
    live_dir: Path | None = None,
    jpeg_quality: int = 75,
    work_dir: Path | None = None,
) -> Any:
    """Train ``spec`` on real faces ``images`` (uint8 N,3,H,W) and save it to ``out_dir``.

    ``jpeg_quality`` is the demo codec: sample statistics logged during training are measured after it.
    ``work_dir`` holds the resumable training state (`pipeline.demo.resume`).
    """
    where = f"demo.generators.{spec.name}.train"
    fixed = {"resolution": resolution, "jpeg_quality": jpeg_quality}
    if spec.kind in GAN_KINDS:
        from pipeline.demo.gan_training import GanTrainConfig, train_gan

        cfg = build_config(GanTrainConfig, spec.train, where=where, arch=spec.kind, **fixed)
        report = train_gan(
            cfg, images, out_dir, seed=seed, device=device, live_dir=live_dir, work_dir=work_dir
        )
    else:
        from pipeline.demo.dm_training import DmTrainConfig, train_dm

        cfg = build_config(DmTrainConfig, spec.train, where=where, kind=spec.kind, **fixed)
        report = train_dm(
            cfg, images, out_dir, seed=seed, device=device, live_dir=live_dir, work_dir=work_dir
        )
    (out_dir / SPEC_FILE).write_text(json.dumps(dataclasses.asdict(spec), indent=2, sort_keys=True))
    return report


def read_spec(model_dir: Path) -> GeneratorSpec:
    """The spec a trained generator folder was made from."""
    path = model_dir / SPEC_FILE
    if not path.is_file():
        raise ModelLoadError(f"{str(path)!r} not found: {str(model_dir)!r} is not a trained demo generator.")
    return GeneratorSpec(**json.loads(path.read_text()))


def sample_generator(
    model_dir: Path, n: int, *, seed: int, batch_size: int, device: torch.device
) -> np.ndarray:
    """Draw ``n`` images (uint8 N,3,H,W) from a trained demo generator, deterministically per seed."""
    spec = read_spec(model_dir)
    if spec.kind in GAN_KINDS:
        from pipeline.demo.gan_sampling import sample_gan

        return sample_gan(model_dir, n, seed=seed, batch_size=batch_size, device=device)
    from pipeline.demo.dm_sampling import sample_dm

    return sample_dm(model_dir, n, seed=seed, batch_size=batch_size, device=device)
