"""StyleGAN2 generator and discriminator in plain PyTorch (no custom CUDA ops).

Parameter and buffer names follow rosinality's ``stylegan2-pytorch`` (``style.N``, ``input.input``, ``conv1``,
``to_rgb1``, ``convs.N``, ``to_rgbs.N``, ``noises.noise_N``), so a converted official FFHQ checkpoint (the
``g_ema`` entry of rosinality's ``.pt`` files) loads with `load_rosinality_checkpoint`. Architecture: Karras
et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020).

Modulated convolution (paper Eq. 1-3) has two mathematically equal forms:

* ``"scale"`` (default): scale the input activations by the style, convolve with the shared weight, multiply
  the output by the demodulation factor. On CPU this is ~2.8x faster than a grouped convolution
  (CPU-FACTS.md).
* ``"grouped"``: the reference form of the paper and rosinality: per-sample weights, one grouped convolution.

The synthesis network also accepts a spatial feature map that replaces (or is added to) the generator's own
feature map at one resolution: the FeatureStyleEncoder design (Yao et al., ECCV 2022) that the paper's GAN
inversion uses (section III-B1).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.models.checkpoint import load_state_into

__all__ = [
    "Discriminator",
    "Generator",
    "ModulationMode",
    "NoiseMode",
    "channels_for",
    "infer_rosinality_config",
    "load_rosinality_checkpoint",
]

ModulationMode = Literal["scale", "grouped"]
NoiseMode = Literal["const", "random", "none"]
_BLUR = (1, 3, 3, 1)


def channels_for(res: int, *, channel_multiplier: float, channel_base: int, max_channels: int) -> int:
    """Channel width at resolution ``res``; the defaults (2, 16384, 512) reproduce rosinality's table."""
    return max(1, min(max_channels, int(channel_base * channel_multiplier) // res))


def _parse_size(size: int) -> int:
    if not isinstance(size, int) or size < 8 or size > 1024 or size & (size - 1):
        raise ConfigError(f"`size` must be a power of two in [8, 1024]. Got {size!r} instead.")
    return int(math.log2(size))


# ---------------------------------------------------------------------------------------------- primitives


def make_kernel(k: tuple[int, ...]) -> torch.Tensor:
    """Separable FIR kernel, normalised to sum 1."""
    t = torch.tensor(k, dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int]
) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter, downsample (the native form of rosinality's op)."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, k, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class PixelNorm(nn.Module):
    """Normalise each latent to unit mean square (StyleGAN mapping input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2x FIR upsampling of the toRGB skip path."""

    def __init__(self, kernel: tuple[int, ...] = _BLUR, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    """FIR low-pass used around strided (transposed) convolutions."""

    def __init__(self, kernel: tuple[int, ...], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, scale: float = 2**0.5
) -> torch.Tensor:
    """Bias + leaky ReLU + gain sqrt(2), as rosinality's fused op (plain PyTorch)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at runtime by 1/sqrt(fan_in) * lr_mul)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init))
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution, optional fused 2x upsampling.

    Shapes: input `(B, in, H, W)`, style `(B, style_dim)` -> `(B, out, H', W')`.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: tuple[int, ...] = _BLUR,
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.mode: ModulationMode = "scale"

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.modulation(style)  # (B, in)
        if self.mode == "grouped":
            return self._grouped(x, s)
        return self._scaled(x, s)

    def _demod(self, s: torch.Tensor) -> torch.Tensor:
        # Eq. 3: sigma_j = sqrt(sum_{i,k} (w'_{ijk})^2) with w' = scale * w * s_i, computed without
        # per-sample weights.
        w2 = (self.scale * self.weight[0]).pow(2).sum(dim=(2, 3))  # (out, in)
        return torch.rsqrt(s.pow(2) @ w2.t() + 1e-8)  # (B, out)

    def _scaled(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        w = self.weight[0] * self.scale  # (out, in, k, k)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=0)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if self.demodulate:
            out = out * self._demod(s)[:, :, None, None]
        if self.upsample:
            out = self.blur(out)
        return out

    def _grouped(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, _, h, w_ = x.shape
        weight = self.scale * self.weight * s[:, None, :, None, None]  # (B, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4)) + 1e-8)
            weight = weight * demod[:, :, None, None, None]
        k = self.kernel_size
        x = x.reshape(1, b * self.in_ch, h, w_)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * self.in_ch, self.out_ch, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=b)
            out = out.reshape(b, self.out_ch, out.shape[-2], out.shape[-1])
            return self.blur(out)
        weight = weight.reshape(b * self.out_ch, self.in_ch, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.reshape(b, self.out_ch, h, w_)


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            return x
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, style_dim: int, *, upsample: bool = False
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, *, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(_BLUR)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


# ----------------------------------------------------------------------------------------------- generator


class Generator(nn.Module):
    """StyleGAN2 generator (rosinality layout).

    Args:
        size (`int`): output resolution, a power of two in [8, 1024].
        style_dim (`int`, defaults to 512): width of z, w and the mapping network.
        n_mlp (`int`, defaults to 8): mapping-network depth.
        channel_multiplier (`float`, defaults to 2), channel_base (`int`, defaults to 16384),
        max_channels (`int`, defaults to 512): channel width per resolution, see `channels_for`.
        lr_mlp (`float`, defaults to 0.01): learning-rate multiplier of the mapping network.

    Style inputs (``n_latent = 2 * log2(size) - 2``): index 0 for ``conv1``, 1 for ``to_rgb1``, then per
    resolution ``2k-1, 2k`` for the two convolutions and ``2k+1`` for its toRGB (shared with the next
    conv, as in StyleGAN2).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        *,
        channel_multiplier: float = 2,
        channel_base: int = 16384,
        max_channels: int = 512,
        lr_mlp: float = 0.01,
    ) -> None:
        super().__init__()
        self.log_size = _parse_size(size)
        if style_dim < 1 or n_mlp < 1:
            raise ConfigError(f"`style_dim` and `n_mlp` must be >= 1. Got {style_dim!r}, {n_mlp!r} instead.")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.arch_config: dict[str, Any] = {
            "size": size,
            "style_dim": style_dim,
            "n_mlp": n_mlp,
            "channel_multiplier": channel_multiplier,
            "channel_base": channel_base,
            "max_channels": max_channels,
            "lr_mlp": lr_mlp,
        }
        self.channels = {
            2**i: channels_for(
                2**i,
                channel_multiplier=channel_multiplier,
                channel_base=channel_base,
                max_channels=max_channels,
            )
            for i in range(2, self.log_size + 1)
        }
        layers: list[nn.Module] = [PixelNorm()]
        layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        self.style = nn.Sequential(*layers)

        ch4 = self.channels[4]
        self.input = ConstantInput(ch4)
        self.conv1 = StyledConv(ch4, ch4, 3, style_dim)
        self.to_rgb1 = ToRGB(ch4, style_dim, upsample=False)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_ch = ch4
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        self.n_latent = self.log_size * 2 - 2

    # -- configuration helpers

    def set_modulation(self, mode: ModulationMode) -> None:
        """Switch every modulated convolution between the ``scale`` and ``grouped`` forms."""
        if mode not in ("scale", "grouped"):
            raise ConfigError(f"`mode` must be 'scale' or 'grouped'. Got {mode!r} instead.")
        for m in self.modules():
            if isinstance(m, ModulatedConv2d):
                m.mode = mode

    def feature_shape(self, res: int) -> tuple[int, int, int]:
        """Shape `(C, res, res)` of the feature map after the last convolution at ``res``."""
        if res not in self.channels:
            raise ConfigError(f"`feature_res` must be one of {sorted(self.channels)}. Got {res!r} instead.")
        return (self.channels[res], res, res)

    # -- latents

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z `(B, style_dim)` -> w `(B, style_dim)`."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, *, seed: int = 0) -> torch.Tensor:
        """Mean w over ``n`` seeded samples, shape `(1, style_dim)`."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=g).to(self.input.input.device)
        return self.mapping(z).mean(0, keepdim=True)

    def _noise_list(self, batch: int, mode: NoiseMode) -> list[torch.Tensor | None]:
        if mode == "none":
            return [None] * self.num_layers
        if mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if mode == "random":
            # Drawn on the CPU generator so a seeded caller gets the same noise on every device.
            dev = self.input.input.device
            return [
                torch.randn(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)).to(dev)
                for i in range(self.num_layers)
            ]
        raise ConfigError(f"`noise_mode` must be 'const', 'random' or 'none'. Got {mode!r} instead.")

    # -- synthesis

    def synthesis(
        self,
        w_plus: torch.Tensor,
        *,
        noise_mode: NoiseMode = "const",
        feature: torch.Tensor | None = None,
        feature_res: int | None = None,
        feature_residual: bool = False,
    ) -> torch.Tensor:
        """Render w+ `(B, n_latent, style_dim)` to an image `(B, 3, size, size)` in about [-1, 1].

        With ``feature`` `(B, C, r, r)` and ``feature_res = r``, the feature map after the last convolution at
        resolution ``r`` is replaced by ``feature`` (or has it added when ``feature_residual``); coarser
        layers still
        run from w+ so that the toRGB skip path keeps their contribution.
        """
        if w_plus.ndim != 3 or w_plus.shape[1] != self.n_latent:
            raise ConfigError(
                f"`w_plus` must have shape (B, {self.n_latent}, {self.style_dim}). Got "
                f"{tuple(w_plus.shape)} instead."
            )
        if feature is not None:
            if feature_res is None:
                raise ConfigError("`feature_res` is required when `feature` is given.")
            want = self.feature_shape(feature_res)
            if tuple(feature.shape[1:]) != want:
                raise ConfigError(
                    f"`feature` must have shape (B, {want}). Got {tuple(feature.shape)} instead."
                )
        b = w_plus.shape[0]
        noise = self._noise_list(b, noise_mode)

        def override(out: torch.Tensor, res: int) -> torch.Tensor:
            if feature is None or res != feature_res:
                return out
            return out + feature if feature_residual else feature

        out = self.input(b)
        out = self.conv1(out, w_plus[:, 0], noise[0])
        out = override(out, 4)
        skip = self.to_rgb1(out, w_plus[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            conv_a, conv_b = self.convs[2 * k], self.convs[2 * k + 1]
            out = conv_a(out, w_plus[:, i], noise[i])
            out = conv_b(out, w_plus[:, i + 1], noise[i + 1])
            out = override(out, 2 ** (k + 3))
            skip = to_rgb(out, w_plus[:, i + 2], skip)
            i += 2
        return skip

    def forward(
        self,
        z: torch.Tensor,
        *,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        noise_mode: NoiseMode = "random",
    ) -> torch.Tensor:
        """Sample: z `(B, style_dim)` -> image `(B, 3, size, size)`."""
        w = self.mapping(z)
        if truncation != 1.0:
            if truncation_latent is None:
                raise ConfigError("`truncation_latent` is required when `truncation` != 1.")
            w = truncation_latent + truncation * (w - truncation_latent)
        return self.synthesis(w[:, None].expand(-1, self.n_latent, -1), noise_mode=noise_mode)


# ------------------------------------------------------------------------------------------- discriminator


class ConvLayer(nn.Sequential):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        *,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(_BLUR) - 2) + (kernel_size - 1)
            layers.append(Blur(_BLUR, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator with minibatch standard deviation (rosinality layout).

    ``in_channels`` is 3 for RGB, 6 behind a `pipeline.models.gan.highpass.HighPassView`."""

    def __init__(
        self,
        size: int,
        *,
        channel_multiplier: float = 2,
        channel_base: int = 16384,
        max_channels: int = 512,
        stddev_group: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        log_size = _parse_size(size)
        self.size = size
        self.arch_config: dict[str, Any] = {
            "size": size,
            "channel_multiplier": channel_multiplier,
            "channel_base": channel_base,
            "max_channels": max_channels,
            "in_channels": in_channels,
        }
        ch = {
            2**i: channels_for(
                2**i,
                channel_multiplier=channel_multiplier,
                channel_base=channel_base,
                max_channels=max_channels,
            )
            for i in range(2, log_size + 1)
        }
        convs: list[nn.Module] = [ConvLayer(in_channels, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            convs.append(ResBlock(in_ch, ch[2 ** (i - 1)]))
            in_ch = ch[2 ** (i - 1)]
        self.convs = nn.Sequential(*convs)
        self.stddev_group, self.stddev_feat = stddev_group, 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `(B, in_channels, size, size)` in [-1, 1] -> logits `(B, 1)`."""
        out = self.convs(x)
        b, c, h, w = out.shape
        # Minibatch stddev over groups of `group` samples (largest divisor of B not above stddev_group).
        group = max(g for g in range(1, min(b, self.stddev_group) + 1) if b % g == 0)
        sd = out.reshape(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        sd = torch.sqrt(sd.var(0, unbiased=False) + 1e-8)
        sd = sd.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
        sd = sd.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, sd], 1))
        return self.final_linear(out.reshape(b, -1))


# ---------------------------------------------------------------------------------------------- loading


def infer_rosinality_config(state: dict[str, torch.Tensor], *, source: str) -> dict[str, Any]:
    """Read size, style_dim, n_mlp and the channel table from a rosinality ``g_ema`` state dict."""
    if "input.input" not in state or "style.1.weight" not in state:
        raise ModelLoadError(
            f"checkpoint {source!r} is not a rosinality StyleGAN2 generator: keys `input.input` /"
            f" `style.1.weight` are missing (first keys: {sorted(state)[:5]})."
        )
    style_dim = int(state["style.1.weight"].shape[1])
    n_mlp = sum(1 for k in state if k.startswith("style.") and k.endswith(".weight"))
    n_rgbs = sum(1 for k in state if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    size = 2 ** (n_rgbs + 2)
    widths = {4: int(state["input.input"].shape[1])}
    for k in range(n_rgbs):
        widths[2 ** (k + 3)] = int(state[f"to_rgbs.{k}.conv.weight"].shape[2])
    max_ch = max(widths.values())
    # Find a channel_base reproducing the table below max_channels (rosinality: 16384 * multiplier).
    base = max((r * c for r, c in widths.items() if c < max_ch), default=max_ch * size)
    cfg = {
        "size": size,
        "style_dim": style_dim,
        "n_mlp": n_mlp,
        "channel_multiplier": 1,
        "channel_base": base,
        "max_channels": max_ch,
    }
    table = {r: channels_for(r, channel_multiplier=1, channel_base=base, max_channels=max_ch) for r in widths}
    if table != widths:
        raise ModelLoadError(
            f"checkpoint {source!r} has a channel table {widths} that no (channel_base, max_channels) "
            f"reproduces."
        )
    return cfg


def load_rosinality_checkpoint(path: str, *, expected_size: int | None = None) -> Generator:
    """Load the ``g_ema`` generator of a rosinality ``.pt`` checkpoint (or a bare state dict).

    Uses ``torch.load(weights_only=True)``: no pickled code is ever executed. Size and widths are inferred
    from the tensors; missing/unexpected/wrong-shape keys and NaN/Inf weights raise `ModelLoadError` before
    any work.
    """
    import argparse

    try:
        # rosinality's training checkpoints carry `args` (an argparse.Namespace): allow that one plain class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"checkpoint {path!r} does not exist.") from exc
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError for unsafe or corrupt files
        raise ModelLoadError(f"checkpoint {path!r} cannot be read safely (weights_only=True): {exc}") from exc
    if not isinstance(ckpt, dict):
        raise ModelLoadError(f"checkpoint {path!r} must hold a dict, got {type(ckpt).__name__}.")
    state = ckpt.get("g_ema", ckpt)
    if not isinstance(state, dict):
        raise ModelLoadError(
            f"checkpoint {path!r}: `g_ema` must be a state dict, got {type(state).__name__}."
        )
    cfg = infer_rosinality_config(state, source=path)
    if expected_size is not None and cfg["size"] != expected_size:
        raise ModelLoadError(
            f"checkpoint {path!r} is a {cfg['size']} px generator; expected {expected_size} px."
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelLoadError(f"checkpoint {path!r} has NaN/Inf in {len(bad)} tensors, e.g. {bad[:3]}.")
    g = Generator(**cfg)
    load_state_into(g, state, source=path)
    return g.eval()
