"""Checkpoints as a folder: ``model.safetensors`` + ``config.json``. Never unpickles code.

diffusers models use their own ``save_pretrained`` folders; everything else in the project
(GANs, encoders, detectors) goes through here so loading is uniform and safe.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import ModelLoadError

__all__ = ["load_checkpoint", "load_state_into", "save_checkpoint", "weights_hash"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_checkpoint(
    folder: str | Path, module: torch.nn.Module, *, kind: str, config: dict[str, Any]
) -> Path:
    """Write ``module``'s state dict and ``{"kind", "config"}`` to ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(out / WEIGHTS_NAME))
    (out / CONFIG_NAME).write_text(json.dumps({"kind": kind, "config": config}, indent=2, sort_keys=True))
    return out


def load_checkpoint(folder: str | Path, *, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``(config, state_dict)`` from ``folder``, checking it holds a ``kind`` model."""
    f = Path(folder)
    if not f.is_dir():
        raise ModelLoadError(f"checkpoint folder {str(f)!r} does not exist.")
    cfg_path, w_path = f / CONFIG_NAME, f / WEIGHTS_NAME
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelLoadError(f"checkpoint folder {str(f)!r} must contain {CONFIG_NAME} and {WEIGHTS_NAME}.")
    meta = json.loads(cfg_path.read_text())
    if meta.get("kind") != kind:
        raise ModelLoadError(f"checkpoint {str(f)!r} holds a {meta.get('kind')!r} model, expected {kind!r}.")
    state = load_file(str(w_path))
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ModelLoadError(f"checkpoint {str(f)!r} has NaN/Inf in {len(bad)} tensors, e.g. {bad[:3]}.")
    return meta["config"], state


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Strictly load ``state``; on mismatch list missing/unexpected/wrong-shape keys by name."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys, e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys, e.g. {unexpected[:5]}")
        if shape:
            k = shape[0]
            parts.append(
                f"{len(shape)} shape mismatches, e.g. {k}: checkpoint {tuple(state[k].shape)}"
                f" vs model {tuple(own[k].shape)}"
            )
        raise ModelLoadError(f"checkpoint {source!r} does not fit the model: " + "; ".join(parts) + ".")
    module.load_state_dict(state, strict=True)


def weights_hash(folder: str | Path) -> str:
    """sha256 over every weight file in ``folder`` (sorted by name): the identity recorded in caches."""
    f = Path(folder)
    files = sorted(p for p in f.rglob("*") if p.suffix in {".safetensors", ".bin", ".pt", ".pth", ".ckpt"})
    if not files:
        raise ModelLoadError(f"no weight files found under {str(f)!r}.")
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(f).as_posix().encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
