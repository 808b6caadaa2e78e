"""ResNet backbones: torchvision-identical layout and size, stems, channel counts, weight loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.models.resnet import build_resnet, load_backbone_weights


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet50_matches_torchvision_parameter_count() -> None:
    # torchvision.models.resnet50(weights=None): 25,557,032 parameters; resnet18: 11,689,512.
    assert _n_params(build_resnet("resnet50", in_channels=3, num_classes=1000)) == 25_557_032
    assert _n_params(build_resnet("resnet18", in_channels=3, num_classes=1000)) == 11_689_512


def test_torchvision_parameter_names() -> None:
    keys = set(build_resnet("resnet50", in_channels=3, num_classes=1000).state_dict())
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer4.2.conv3.weight",
              "layer4.2.bn3.bias", "fc.weight", "fc.bias"):  # fmt: skip
        assert k in keys


@pytest.mark.parametrize("stem", ["imagenet", "small", "cifar"])
def test_nine_channel_32px_output_shape(stem: str) -> None:
    model = build_resnet("resnet50", in_channels=9, num_classes=3, stem=stem, base_width=8).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 9, 32, 32))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_stem_changes_only_conv1_and_resolution() -> None:
    a = build_resnet("resnet18", in_channels=6, stem="imagenet", base_width=8)
    b = build_resnet("resnet18", in_channels=6, stem="small", base_width=8)
    assert a.conv1.kernel_size == (7, 7) and b.conv1.kernel_size == (3, 3) and b.conv1.stride == (2, 2)
    diff = {k for k, v in a.state_dict().items() if b.state_dict()[k].shape != v.shape}
    assert diff == {"conv1.weight"}
    x = torch.randn(1, 6, 32, 32)
    feat_a = a.layer1(a.maxpool(a.relu(a.bn1(a.conv1(x)))))
    feat_b = b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))
    assert feat_a.shape[-1] == 8 and feat_b.shape[-1] == 16


def test_bad_names_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="backbone"):
        build_resnet("resnet34", in_channels=3)
    with pytest.raises(ConfigError, match="stem"):
        build_resnet("resnet18", in_channels=3, stem="tiny")


def test_load_rgb_weights_into_nine_channels(tmp_path) -> None:
    src = build_resnet("resnet18", in_channels=3, num_classes=1000, base_width=8)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = build_resnet("resnet18", in_channels=9, num_classes=3, base_width=8)
    skipped = load_backbone_weights(dst, path)
    assert set(skipped) == {"fc.weight", "fc.bias"}
    w = dst.conv1.weight
    assert torch.allclose(w[:, :3], src.conv1.weight / 3) and torch.allclose(w[:, 6:], src.conv1.weight / 3)
    assert torch.equal(dst.layer2[0].conv1.weight, src.layer2[0].conv1.weight)
    wrong = build_resnet("resnet50", in_channels=3, num_classes=3, base_width=8)
    with pytest.raises(ModelLoadError):
        load_backbone_weights(wrong, path)
