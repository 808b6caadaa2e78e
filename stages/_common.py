"""What every stage does first: logging, params, device."""

from __future__ import annotations

import logging
from typing import Any

from pipeline.device import resolve_device
from pipeline.params import get, load_params

__all__ = ["setup"]


def setup(params_file: str = "params.yaml") -> tuple[dict[str, Any], Any]:
    """Configure logging and return ``(params, device)``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = load_params(params_file)
    device = resolve_device(str(get(params, "base.device", "auto")))
    logging.getLogger("stages").info("<device=%s>", device)
    return params, device
