"""Training the CNN detectors: one recipe for every composition, so Table III compares inputs only.

Recipe (paper III-B3): a ResNet over the composition's channels with a ternary softmax head (real / GAN / DM),
trained with cross-entropy (Eq. 4, ``L = -sum_c y_c log p_c``). Additions the paper leaves open, fixed here:

- class balance: ``weights`` (CE weight ``N / (K n_k)`` per class) or ``sampler`` (each epoch draws N training
  rows with replacement, probability ``1 / n_k``), so the 1:1:1 ratio of ASFD is not assumed;
- validation metrics are class-balanced (mean over classes of the per-class mean CE, and balanced accuracy),
  so an imbalanced val split cannot reward predicting the majority class;
- early stopping: after each epoch the monitored val metric (``val_loss`` by default) is compared with the
  best so far; the best weights are kept and training stops after ``patience`` epochs without improvement;
- determinism: weights are initialised under ``torch.manual_seed(seed)`` and every shuffle, sample, flip and
  CNNSpot perturbation comes from one ``numpy`` generator seeded with ``seed`` (same seed -> same weights on
  the same machine and thread count);
- mixed precision: `pipeline.device.autocast` (autocast on CUDA when ``amp``; plain float32 on CPU).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.data.manifest import FAMILIES
from pipeline.detectors.inputs import COMPOSITIONS, CNNSpotAugment, Composition
from pipeline.device import autocast, autocast_dtype, seed_everything
from pipeline.errors import ConfigError, InputDataError, ModelLoadError
from pipeline.models.checkpoint import load_checkpoint, load_state_into, save_checkpoint
from pipeline.models.resnet import BACKBONES, STEMS, ResNet, build_resnet, load_backbone_weights

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipeline.detectors.data import SplitData

__all__ = [
    "CHECKPOINT_KIND",
    "DetectorTrainConfig",
    "EpochRecord",
    "TrainReport",
    "build_detector",
    "load_detector",
    "predict_proba",
    "train_detector",
]

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "detector"
NUM_CLASSES = len(FAMILIES)


@dataclass(frozen=True, kw_only=True)
class DetectorTrainConfig:
    """The shared training recipe (params ``train.*``, per-detector overrides in ``detectors.<name>``).

    Attributes:
        backbone (`str`): ``resnet50`` (the paper) or ``resnet18`` (fast CPU demo).
        stem (`str`): ``imagenet``, ``small`` or ``cifar`` (`pipeline.models.resnet`).
        base_width (`int`): 64 = the standard ResNet; smaller only for tests/smoke runs.
        epochs (`int`): maximum epochs.
        batch_size (`int`): images per step.
        lr (`float`): learning rate.
        weight_decay (`float`): L2 (SGD) / decoupled-free Adam weight decay.
        optimizer (`str`): ``adam`` or ``sgd`` (momentum 0.9).
        patience (`int`): epochs without improvement of ``monitor`` before stopping (>= 1).
        monitor (`str`): ``val_loss`` (lower is better) or ``val_acc`` (higher is better).
        class_balance (`str`): ``weights`` or ``sampler``.
        hflip (`bool`): random horizontal flips in training.
        seed (`int`): everything random.
        max_train_images (`int`): 0 = all; else a class-stratified subset of this size (quick profiles).
        amp (`bool`): autocast on CUDA (ignored on CPU).
        pretrained (`str`): optional local torchvision/timm ResNet weights file ("" = train from scratch).
        eval_batch_size (`int`): batch size for validation and prediction.
    """

    backbone: str = "resnet50"
    stem: str = "imagenet"
    base_width: int = 64
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"
    patience: int = 3
    monitor: Literal["val_loss", "val_acc"] = "val_loss"
    class_balance: Literal["weights", "sampler"] = "weights"
    hflip: bool = True
    seed: int = 0
    max_train_images: int = 0
    amp: bool = True
    pretrained: str = ""
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        choices = {
            "backbone": tuple(BACKBONES),
            "stem": STEMS,
            "optimizer": ("adam", "sgd"),
            "monitor": ("val_loss", "val_acc"),
            "class_balance": ("weights", "sampler"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"`train.{name}` must be one of {allowed}. Got {getattr(self, name)!r} instead."
                )
        for name, low in (
            ("base_width", 1),
            ("epochs", 1),
            ("batch_size", 2),
            ("patience", 1),
            ("max_train_images", 0),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"`train.{name}` must be an int >= {low}. Got {v!r} instead.")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ConfigError(f"`train.lr` must be a number > 0. Got {self.lr!r} instead.")
        if not (isinstance(self.weight_decay, int | float) and self.weight_decay >= 0):
            raise ConfigError(
                f"`train.weight_decay` must be a number >= 0. Got {self.weight_decay!r} instead."
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DetectorTrainConfig:
        """Build from a params mapping; unknown keys are a `ConfigError` naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown `train` keys {unknown}; allowed: {sorted(known)}.")
        return cls(**dict(values))


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's curve point."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    seconds: float


@dataclass
class TrainReport:
    """What `train_detector` did; written as ``train.json`` beside the checkpoint."""

    composition: str
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    best_val_loss: float
    best_val_acc: float
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    seconds: float
    history: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_detector(composition: Composition, config: DetectorTrainConfig) -> ResNet:
    """The backbone for ``composition`` (its channel count) with a ternary head."""
    model = build_resnet(
        config.backbone,
        in_channels=composition.in_channels,
        num_classes=NUM_CLASSES,
        stem=config.stem,
        base_width=config.base_width,
    )
    if config.pretrained:
        load_backbone_weights(model, config.pretrained)
    return model


def _stratified_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` row indices keeping the class proportions (at least one per present class), sorted."""
    picked = []
    classes = np.unique(labels)
    for c in classes:
        rows = np.flatnonzero(labels == c)
        k = max(1, round(n * rows.size / labels.size))
        picked.append(rng.choice(rows, size=min(k, rows.size), replace=False))
    return np.sort(np.concatenate(picked))


def _balanced_eval(
    model: nn.Module,
    composition: Composition,
    data: SplitData,
    *,
    batch_size: int,
    device: torch.device,
    amp: bool,
) -> tuple[float, float]:
    """Class-balanced (mean CE, accuracy) on ``data``: averaged per class, then over present classes."""
    probs = predict_proba(model, composition, data, batch_size=batch_size, device=device, amp=amp)
    nll = -np.log(np.clip(probs[np.arange(len(data)), data.labels], 1e-12, None))
    correct = probs.argmax(1) == data.labels
    present = np.unique(data.labels)
    loss = float(np.mean([nll[data.labels == c].mean() for c in present]))
    acc = float(np.mean([correct[data.labels == c].mean() for c in present]))
    return loss, acc


def train_detector(
    composition: Composition,
    config: DetectorTrainConfig,
    data: Mapping[str, SplitData],
    out_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    live_dir: str | Path | None = None,
) -> TrainReport:
    """Train one detector on ``data["train"]``, select on ``data["val"]``, save the best checkpoint.

    Args:
        composition (`Composition`): which cached fields form the input.
        config (`DetectorTrainConfig`): the recipe.
        data (`Mapping[str, SplitData]`): at least ``train`` and ``val`` (from `load_detector_data`).
        out_dir (`str | Path`): checkpoint folder (``model.safetensors``, ``config.json``, ``train.json``).
        device: where to train.
        live_dir (`str | Path | None`): dvclive folder for the curves (train/loss, val/loss, val/acc).

    Returns:
        `TrainReport`.

    Raises:
        InputDataError: a split is missing/empty, or a class has no training images.
    """
    device = torch.device(device)
    for split in ("train", "val"):
        if split not in data or len(data[split]) == 0:
            raise InputDataError(f"detector {composition.name!r}: the {split!r} split is empty or missing.")
    train, val = data["train"], data["val"]
    rng = np.random.default_rng(config.seed)
    seed_everything(config.seed)
    if config.max_train_images and config.max_train_images < len(train):
        train = train.take(_stratified_subset(train.labels, config.max_train_images, rng))
    counts = np.bincount(train.labels, minlength=NUM_CLASSES)
    if (counts == 0).any():
        absent = [FAMILIES[i] for i in np.flatnonzero(counts == 0)]
        raise InputDataError(
            f"detector {composition.name!r}: no training images of {absent}; a ternary head needs all of"
            f" {FAMILIES} (train counts {train.class_counts()})."
        )
    model = build_detector(composition, config).to(device)
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
        )
    n = len(train)
    class_weight = None
    if config.class_balance == "weights":
        class_weight = torch.as_tensor(n / (NUM_CLASSES * counts), dtype=torch.float32, device=device)
    sample_p = (1.0 / counts[train.labels]) / np.sum(1.0 / counts[train.labels])
    criterion = nn.CrossEntropyLoss(weight=class_weight)  # Eq. 4 (weighted when class_balance=weights)
    scaler = torch.amp.GradScaler(
        device.type, enabled=config.amp and autocast_dtype(device, "auto") == torch.float16
    )
    precision = "auto" if config.amp else "fp32"

    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None)
        live.log_params({"composition": composition.name, **asdict(config)})

    out = Path(out_dir)
    ckpt_config = {
        "composition": composition.to_config(),
        "architecture": {
            "backbone": config.backbone,
            "stem": config.stem,
            "base_width": config.base_width,
            "in_channels": composition.in_channels,
            "num_classes": NUM_CLASSES,
        },
        "classes": list(FAMILIES),
        "train": asdict(config),
    }
    better_is_lower = config.monitor == "val_loss"
    best_score = math.inf if better_is_lower else -math.inf
    best_loss, best_acc, best_epoch, since_best = math.inf, 0.0, 0, 0
    history: list[EpochRecord] = []
    stopped_early = False
    t_start = time.perf_counter()
    steps_per_epoch = max(1, n // config.batch_size)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        if config.class_balance == "sampler":
            order = rng.choice(n, size=n, replace=True, p=sample_p)
        else:
            order = rng.permutation(n)
        batches = [order[i : i + config.batch_size] for i in range(0, n, config.batch_size)]
        batches = [b for b in batches if b.size >= 2]  # BatchNorm needs > 1 sample per batch
        total, seen = 0.0, 0
        bar = tqdm(batches, desc=f"{composition.name} epoch {epoch}", leave=False, disable=None)
        for b in bar:
            arrays = {k: v[b] for k, v in train.arrays.items()}
            x = composition.compose(arrays, train=True, hflip=config.hflip, rng=rng, device=device)
            y = torch.as_tensor(train.labels[b], device=device)
            opt.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = criterion(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * b.size
            seen += b.size
            bar.set_postfix(loss=f"{total / seen:.4f}")
        train_loss = total / max(seen, 1)
        val_loss, val_acc = _balanced_eval(
            model, composition, val, batch_size=config.eval_batch_size, device=device, amp=config.amp
        )
        rec = EpochRecord(epoch, train_loss, val_loss, val_acc, time.perf_counter() - t0)
        history.append(rec)
        logger.info(
            "epoch <detector=%s> <epoch=%d> <train_loss=%.4f> <val_loss=%.4f> <val_acc=%.4f> <steps=%d>",
            composition.name, epoch, train_loss, val_loss, val_acc, steps_per_epoch,
        )  # fmt: skip
        if live is not None:
            live.log_metric("train/loss", train_loss)
            live.log_metric("val/loss", val_loss)
            live.log_metric("val/acc", val_acc)
            live.next_step()
        score = val_loss if better_is_lower else val_acc
        if (score < best_score) if better_is_lower else (score > best_score):
            best_score, best_loss, best_acc, best_epoch, since_best = score, val_loss, val_acc, epoch, 0
            save_checkpoint(out, model, kind=CHECKPOINT_KIND, config={**ckpt_config, "best_epoch": epoch})
        else:
            since_best += 1
            if since_best >= config.patience:
                stopped_early = epoch < config.epochs
                logger.info(
                    "early stop <detector=%s> <epoch=%d> <best=%d>", composition.name, epoch, best_epoch
                )
                break
    if live is not None:
        live.end()
    report = TrainReport(
        composition=composition.name,
        best_epoch=best_epoch,
        epochs_run=len(history),
        stopped_early=stopped_early,
        best_val_loss=best_loss,
        best_val_acc=best_acc,
        train_counts=train.class_counts(),
        val_counts=val.class_counts(),
        seconds=time.perf_counter() - t_start,
        history=history,
    )
    (out / "train.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def load_detector(folder: str | Path, *, device: torch.device | str = "cpu") -> tuple[ResNet, Composition]:
    """Rebuild a trained detector and its composition from a checkpoint folder (eval mode)."""
    cfg, state = load_checkpoint(folder, kind=CHECKPOINT_KIND)
    try:
        comp_cfg, arch = cfg["composition"], cfg["architecture"]
        base = COMPOSITIONS[comp_cfg["name"]]
    except KeyError as exc:
        raise ModelLoadError(f"detector checkpoint {str(folder)!r}: config lacks {exc}.") from exc
    composition = Composition(
        name=base.name,
        fields=tuple(comp_cfg["fields"]),
        transforms=tuple(comp_cfg["transforms"]),
        augment=comp_cfg["augment"],
        description=base.description,
        cnnspot=CNNSpotAugment(**comp_cfg["cnnspot"]) if "cnnspot" in comp_cfg else base.cnnspot,
    )
    model = build_resnet(
        arch["backbone"],
        in_channels=arch["in_channels"],
        num_classes=arch["num_classes"],
        stem=arch["stem"],
        base_width=arch.get("base_width", 64),
    )
    load_state_into(model, state, source=str(folder))
    return model.to(device).eval(), composition


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    composition: Composition,
    data: SplitData,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    amp: bool = True,
) -> np.ndarray:
    """Softmax probabilities float64 `(N, 3)` (real, gan, dm) in eval mode, no augmentation."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = np.zeros((len(data), NUM_CLASSES), dtype=np.float64)
    precision = "auto" if amp else "fp32"
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        x = composition.compose({k: v[sl] for k, v in data.arrays.items()}, device=device)
        with autocast(device, precision):
            logits = model(x)
        out[sl] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    model.train(was_training)
    return out
