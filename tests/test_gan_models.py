"""StyleGAN2 / DCGAN modules: shapes, rosinality layout, the two modulation forms, checkpoint loading."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.models.gan.dcgan import DCGANDiscriminator, DCGANGenerator
from pipeline.models.gan.highpass import HighPassView, laplacian
from pipeline.models.gan.stylegan2 import Discriminator, Generator, load_rosinality_checkpoint


def get_generator(**overrides: object) -> Generator:
    kw: dict = {"size": 16, "style_dim": 8, "n_mlp": 2, "max_channels": 8}
    kw.update(overrides)
    torch.manual_seed(0)
    g = Generator(**kw)
    # Non-trivial weights (fresh noise/bias weights are zero, which would hide bugs).
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return g.eval()


def test_forward_shapes() -> None:
    g = get_generator()
    assert g.n_latent == 2 * 4 - 2
    x = g(torch.randn(3, 8))
    assert x.shape == (3, 3, 16, 16)
    d = Discriminator(16, max_channels=8)
    assert d(x).shape == (3, 1)  # batch 3: stddev group falls back to a divisor of 3
    assert d(torch.randn(8, 3, 16, 16)).shape == (8, 1)


def test_rosinality_keys_present() -> None:
    keys = set(get_generator().state_dict())
    for k in [
        "style.1.weight",
        "style.2.bias",
        "input.input",
        "conv1.conv.weight",
        "conv1.conv.modulation.weight",
        "conv1.noise.weight",
        "conv1.activate.bias",
        "to_rgb1.conv.weight",
        "to_rgb1.bias",
        "convs.0.conv.weight",
        "convs.0.conv.blur.kernel",
        "convs.3.activate.bias",
        "to_rgbs.0.upsample.kernel",
        "to_rgbs.1.conv.modulation.bias",
        "noises.noise_0",
        "noises.noise_4",
    ]:
        assert k in keys, k
    assert "noises.noise_5" not in keys and "convs.4.conv.weight" not in keys
    d_keys = set(Discriminator(16, max_channels=8).state_dict())
    assert {
        "convs.0.0.weight",
        "convs.1.conv1.0.weight",
        "final_conv.0.weight",
        "final_linear.1.weight",
    } <= d_keys


def test_modulation_paths_match() -> None:
    g = get_generator()
    w = g.mapping(torch.randn(4, 8))[:, None].expand(-1, g.n_latent, -1)
    feat = torch.randn(4, *g.feature_shape(8))
    with torch.no_grad():
        a = g.synthesis(w, feature=feat, feature_res=8, feature_residual=True)
        g.set_modulation("grouped")
        b = g.synthesis(w, feature=feat, feature_res=8, feature_residual=True)
    assert (a - b).abs().max().item() < 1e-5


def test_noise_modes_and_feature_override() -> None:
    g = get_generator()
    w = g.mapping(torch.randn(2, 8))[:, None].expand(-1, g.n_latent, -1)
    with torch.no_grad():
        a, b = g.synthesis(w), g.synthesis(w)
        assert torch.equal(a, b)  # const noise: deterministic
        assert not torch.equal(g.synthesis(w, noise_mode="random"), g.synthesis(w, noise_mode="random"))
        zero = torch.zeros(2, *g.feature_shape(8))
        assert torch.equal(g.synthesis(w, feature=zero, feature_res=8, feature_residual=True), a)
        assert not torch.allclose(g.synthesis(w, feature=zero + 1.0, feature_res=8), a)


def _rosinality_file(tmp_path: Path, g: Generator, **extra: object) -> Path:
    path = tmp_path / "550000.pt"
    d = Discriminator(g.size, max_channels=8)
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict(), **extra}, path)
    return path


def test_rosinality_checkpoint_roundtrip(tmp_path: Path) -> None:
    g = get_generator(max_channels=16, channel_base=64)  # widths 16, 16, 8 (4, 8, 16 px)
    path = _rosinality_file(
        tmp_path, g, args=argparse.Namespace(size=16, latent=8), latent_avg=torch.zeros(8)
    )
    loaded = load_rosinality_checkpoint(str(path), expected_size=16)
    assert loaded.channels == g.channels
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded(z, noise_mode="const"), g(z, noise_mode="const"))


def test_rosinality_checkpoint_bad(tmp_path: Path) -> None:
    g = get_generator()
    with pytest.raises(ModelLoadError, match="expected 32 px"):
        load_rosinality_checkpoint(str(_rosinality_file(tmp_path, g)), expected_size=32)
    state = g.state_dict()
    del state["conv1.noise.weight"]
    torch.save({"g_ema": state}, tmp_path / "missing.pt")
    with pytest.raises(ModelLoadError, match=r"missing 1 keys.*conv1\.noise\.weight"):
        load_rosinality_checkpoint(str(tmp_path / "missing.pt"))
    state = g.state_dict()
    state["convs.1.conv.weight"] = torch.full_like(state["convs.1.conv.weight"], float("nan"))
    torch.save({"g_ema": state}, tmp_path / "nan.pt")
    with pytest.raises(ModelLoadError, match=r"NaN/Inf.*convs\.1\.conv\.weight"):
        load_rosinality_checkpoint(str(tmp_path / "nan.pt"))
    torch.save({"g_ema": {"foo": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(ModelLoadError, match="not a rosinality StyleGAN2"):
        load_rosinality_checkpoint(str(tmp_path / "foreign.pt"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_rosinality_checkpoint(str(tmp_path / "absent.pt"))


def test_rosinality_refuses_pickled_code(tmp_path: Path) -> None:
    torch.save({"g_ema": get_generator().state_dict(), "opt": torch.optim.SGD}, tmp_path / "code.pt")
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_rosinality_checkpoint(str(tmp_path / "code.pt"))


def test_dcgan_shapes() -> None:
    g = DCGANGenerator(16, 8, base_channels=4, max_channels=16)
    x = g(torch.randn(5, 8))
    assert x.shape == (5, 3, 16, 16) and x.abs().max() <= 1
    assert DCGANDiscriminator(16, base_channels=4, max_channels=16)(x).shape == (5, 1)
    assert not any(isinstance(m, Generator) for m in g.modules())


def test_highpass_view_is_the_gate_laplacian() -> None:
    """The discriminator's extra channels are `weight` x the Laplacian the quality gate measures hf with."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    out = HighPassView(2.0)(x)
    assert out.shape == (2, 6, 8, 8) and torch.equal(out[:, :3], x)
    g = x.numpy()
    inner = (
        4 * g[..., 1:-1, 1:-1] - g[..., :-2, 1:-1] - g[..., 2:, 1:-1] - g[..., 1:-1, :-2] - g[..., 1:-1, 2:]
    )
    torch.testing.assert_close(out[:, 3:, 1:-1, 1:-1], 2.0 * torch.from_numpy(inner))
    ramp = torch.linspace(-1, 1, 8).expand(1, 3, 8, 8)  # no curvature: nothing passes inside the image
    assert laplacian(ramp)[..., 1:-1].abs().max() < 1e-6
    assert laplacian(torch.ones(1, 3, 8, 8)).abs().max() == 0
    with pytest.raises(ConfigError, match="weight"):
        HighPassView(0.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: Discriminator(16, max_channels=8, in_channels=c),
        lambda c: DCGANDiscriminator(16, base_channels=4, max_channels=8, in_channels=c),
    ],
)
def test_discriminators_take_a_highpass_view(make) -> None:
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert torch.nn.Sequential(HighPassView(2.0), make(6))(x).shape == (4, 1)
    with pytest.raises(RuntimeError):
        make(3)(HighPassView(2.0)(x))  # a 3-channel discriminator cannot read the 6-channel view
