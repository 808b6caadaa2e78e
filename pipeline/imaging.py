"""Conversions between stored images (uint8, N x 3 x H x W) and model tensors (float32 in [-1, 1])."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["from_model", "from_model_float", "to_model"]


def to_model(images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 `(B, 3, H, W)` in [0, 255] -> float32 tensor in [-1, 1] on ``device``."""
    t = torch.as_tensor(images).to(device)
    return t.float().div_(127.5).sub_(1.0)


def from_model_float(x: torch.Tensor) -> np.ndarray:
    """float tensor in [-1, 1] -> float32 numpy in [-1, 1] (unclipped), on the CPU."""
    return x.detach().float().cpu().numpy()


def from_model(x: torch.Tensor) -> np.ndarray:
    """float tensor in [-1, 1] -> uint8 numpy `(B, 3, H, W)`, clipped and rounded."""
    y = (x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5
    return y.round().to(torch.uint8).numpy()
