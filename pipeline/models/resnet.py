"""ResNet-18/50 backbones for the detectors, in torchvision's layout and parameter names.

Why our own copy: torchvision from PyPI does not import beside the project's torch 2.13 CPU build
(``RuntimeError: operator torchvision::nms does not exist``, see CPU-FACTS.md), and the detectors must not
depend on a package that fails to import. The code follows torchvision's ``resnet.py`` (He et al. 2016,
"v1.5": the stride of a Bottleneck sits on its 3x3 convolution) so that parameter names, shapes and the
parameter count (ResNet-50, 3 -> 1000 classes: 25,557,032) are identical, and torchvision/timm ImageNet
weights can be loaded from a local file with `load_backbone_weights` (none ship offline).

Stems (`stem`):
- ``"imagenet"``: 7x7 stride-2 convolution + 3x3 stride-2 max-pool (the paper's ResNet-50 on 256 px).
  At 32 px this leaves 8x8 maps after the stem and 1x1 in ``layer4``: most spatial detail is gone before the
  first residual block, which matters for detectors that look at pixel-level reconstruction residue.
- ``"small"``: 3x3 stride-2 convolution, no max-pool. The compromise for 32-64 px inputs: 16x16 maps into
  ``layer1`` at 32 px (2x2 in ``layer4``). The demo default.
- ``"cifar"``: 3x3 stride-1 convolution, no max-pool (He et al.'s CIFAR recipe): full resolution into
  ``layer1``. Use it only when the resolution is tiny and time allows.
Measured here (``bench/bench_detector.py``, 9 channels, 32 px, batch 32, Adam step, 2 shared cores;
seconds per step imagenet / small / cifar): ResNet-18 0.23 / 0.29 / 0.99, ResNet-50 0.37 / 1.10 / 3.47.
So ``small`` costs 1.3x (R18) to 3x (R50) the ImageNet stem and ``cifar`` 4.4x to 9.3x (CPU-FACTS.md: ~10x
at 64 px). Only ``conv1`` differs between stems, so non-ImageNet stems keep a random ``conv1`` when
pretrained weights are loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from pipeline.errors import ConfigError, ModelLoadError

__all__ = [
    "BACKBONES",
    "STEMS",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "build_resnet",
    "load_backbone_weights",
    "resnet18",
    "resnet50",
]

logger = logging.getLogger(__name__)

Stem = Literal["imagenet", "small", "cifar"]
STEMS: tuple[str, ...] = ("imagenet", "small", "cifar")


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, "ResNet v1.5"), 1x1 expand x4; ResNet-50/101/152."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with a configurable input width, class count and stem.

    Args:
        block (`type[BasicBlock] | type[Bottleneck]`): residual block type.
        layers (`list[int]`): blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
        in_channels (`int`, defaults to 3): 3 (RGB), 6 (RGB + one reconstruction), 9 (RGB + two).
        num_classes (`int`, defaults to 3): the ternary head real / GAN / DM.
        stem (`str`, defaults to `"imagenet"`): `imagenet`, `small` or `cifar` (module docstring).
        zero_init_residual (`bool`, defaults to False): zero the last BN of each block (torchvision option).
        base_width (`int`, defaults to 64): channels of the stem and ``layer1`` (doubling per stage). 64 is
            the standard ResNet; smaller widths (e.g. 8) only exist for fast tests and smoke runs.

    Input `(B, in_channels, H, W)` float32 in roughly `[-1, 1]`; output logits `(B, num_classes)`.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        *,
        in_channels: int = 3,
        num_classes: int = 3,
        stem: Stem = "imagenet",
        zero_init_residual: bool = False,
        base_width: int = 64,
    ):
        super().__init__()
        if base_width < 1:
            raise ConfigError(f"`base_width` must be >= 1. Got {base_width!r} instead.")
        if in_channels < 1:
            raise ConfigError(f"`in_channels` must be >= 1. Got {in_channels!r} instead.")
        if num_classes < 2:
            raise ConfigError(f"`num_classes` must be >= 2. Got {num_classes!r} instead.")
        if stem not in STEMS:
            raise ConfigError(f"`stem` must be one of {STEMS}. Got {stem!r} instead.")
        self.in_channels, self.num_classes, self.stem = in_channels, num_classes, stem
        w = base_width
        self.inplanes = w
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, w, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            stride = 2 if stem == "small" else 1
            self.conv1 = nn.Conv2d(in_channels, w, kernel_size=3, stride=stride, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, w, layers[0])
        self.layer2 = self._make_layer(block, 2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * w, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * w * block.expansion, num_classes)

        # torchvision's initialisation, so training from scratch matches the reference recipe.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features `(B, 8 * base_width * expansion)` (for t-SNE-style inspection)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def resnet18(
    *, in_channels: int = 3, num_classes: int = 3, stem: Stem = "imagenet", base_width: int = 64
) -> ResNet:
    """ResNet-18 (BasicBlock [2, 2, 2, 2], 11.7M params at 3 -> 1000): the fast CPU demo backbone."""
    return ResNet(
        BasicBlock,
        [2, 2, 2, 2],
        in_channels=in_channels,
        num_classes=num_classes,
        stem=stem,
        base_width=base_width,
    )


def resnet50(
    *, in_channels: int = 3, num_classes: int = 3, stem: Stem = "imagenet", base_width: int = 64
) -> ResNet:
    """ResNet-50 (Bottleneck [3, 4, 6, 3], 25.6M params at 3 -> 1000): the paper's backbone."""
    return ResNet(
        Bottleneck,
        [3, 4, 6, 3],
        in_channels=in_channels,
        num_classes=num_classes,
        stem=stem,
        base_width=base_width,
    )


BACKBONES = {"resnet18": resnet18, "resnet50": resnet50}


def build_resnet(
    backbone: str, *, in_channels: int, num_classes: int = 3, stem: str = "imagenet", base_width: int = 64
) -> ResNet:
    """Build a backbone by name (`resnet18` or `resnet50`); unknown names are a `ConfigError`."""
    if backbone not in BACKBONES:
        raise ConfigError(f"`backbone` must be one of {tuple(BACKBONES)}. Got {backbone!r} instead.")
    if stem not in STEMS:
        raise ConfigError(f"`stem` must be one of {STEMS}. Got {stem!r} instead.")
    return BACKBONES[backbone](  # type: ignore[operator]
        in_channels=in_channels, num_classes=num_classes, stem=stem, base_width=base_width
    )


def load_backbone_weights(model: ResNet, path: str | Path) -> list[str]:
    """Initialise ``model`` from a local torchvision/timm ResNet state dict; returns the keys not taken.

    Accepts ``.safetensors`` or a ``.pth``/``.pt`` state dict (read with ``torch.load(weights_only=True)``,
    so no code is unpickled). ``fc.*`` is skipped when the class count differs (the ternary head is trained
    from scratch). An RGB ``conv1`` is widened to ``in_channels`` by tiling it over the 3-channel groups and
    scaling by ``3 / in_channels`` (activations keep their ImageNet scale); a stem of another shape keeps its
    random ``conv1``. Any other missing or mis-shaped key is a `ModelLoadError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"backbone weights file {str(p)!r} does not exist.")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"backbone weights file {str(p)!r} cannot be read: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = model.state_dict()
    skipped: list[str] = []
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            skipped.append(key)
            continue
        target = own[key]
        if key == "conv1.weight" and value.shape != target.shape:
            same_kernel = value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]
            if same_kernel and value.shape[1] == 3 and target.shape[1] % 3 == 0:
                reps = target.shape[1] // 3
                value = value.repeat(1, reps, 1, 1) * (3.0 / target.shape[1])
            else:
                skipped.append(key)
                continue
        if key.startswith("fc.") and value.shape != target.shape:
            skipped.append(key)
            continue
        if value.shape != target.shape:
            raise ModelLoadError(
                f"backbone weights {str(p)!r}: `{key}` has shape {tuple(value.shape)},"
                f" the model expects {tuple(target.shape)} (wrong architecture?)."
            )
        new_state[key] = value.to(target.dtype)
    missing = sorted(k for k in own if k not in new_state and not k.startswith(("fc.", "conv1.")))
    if missing:
        raise ModelLoadError(
            f"backbone weights {str(p)!r} lack {len(missing)} keys of the model, e.g. {missing[:5]}."
        )
    model.load_state_dict(new_state, strict=False)
    logger.info("loaded backbone weights <path=%s> <skipped=%d>", p, len(skipped))
    return skipped
