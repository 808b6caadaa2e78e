"""Device selection and mixed precision: one place decides where tensors live and in what dtype."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

import torch

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Precision", "autocast", "parse_precision", "resolve_device", "seed_everything"]

Precision = Literal["fp32", "bf16", "fp16", "auto"]
_PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the device to run on: ``auto`` picks cuda, then mps, then cpu.

    Args:
        name (`str`, defaults to `"auto"`): `auto`, `cpu`, `cuda`, `cuda:N` or `mps`.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"`device` must be auto, cpu, cuda[:N] or mps. Got {name!r} instead.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` is {name!r} but CUDA is not available on this machine.")
    return device


def parse_precision(value: str) -> Precision:
    """Validate a precision name; ``auto`` means bf16/fp16 autocast on CUDA and float32 elsewhere."""
    if value not in _PRECISIONS:
        raise ConfigError(f"`precision` must be one of {_PRECISIONS}. Got {value!r} instead.")
    return value  # type: ignore[return-value]


def autocast_dtype(device: torch.device, precision: Precision) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for plain float32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision = "auto") -> Iterator[None]:
    """Mixed-precision context: autocast on CUDA by default, explicit opt-in on CPU."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator seeded the same for explicit use."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
