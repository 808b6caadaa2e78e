"""Pictures people would rather look at than read: image grids (samples, reconstructions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["image_grid", "save_image_grid"]


def image_grid(images: np.ndarray, ncol: int = 8, pad: int = 1) -> np.ndarray:
    """Tile uint8 ``(N, 3, H, W)`` images into one ``(H', W', 3)`` picture, row-major."""
    n, c, h, w = images.shape
    if c != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 (N, 3, H, W) images, got {images.dtype} {images.shape}.")
    ncol = max(1, min(ncol, n))
    nrow = (n + ncol - 1) // ncol
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = img.transpose(1, 2, 0)
    return grid


def save_image_grid(
    images: np.ndarray, path: str | Path, ncol: int = 8, scale: int = 2, pad: int = 1
) -> Path:
    """Save a grid PNG (``pad`` px white gaps), upscaled by ``scale`` (nearest) so 32 px faces are visible."""
    path = Path(path)
    grid = Image.fromarray(image_grid(images, ncol, pad))
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
