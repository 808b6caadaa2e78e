"""Resumable generator training: the whole training state, saved outside DVC's outputs every few minutes.

DVC deletes a stage's outputs before running it, so an interrupted ``train_generator`` stage used to start
again from step 0, and the full demo's diffusion models train for about two hours each here. Training writes
its state (weights, EMA, optimiser, learning-rate schedule, random generator, data order, logged history and
the dvclive folder) to ``data/_work/train/<g>/`` (untracked, as the reconstruction stages' partial stores) and
the next run resumes from it when nothing that shapes the run has changed: the same training code, the same
images, the same recipe. ``steps`` alone is left out of that key, so raising it continues a finished run (the
learning rate is warm-up then constant, so a run extended from 9k to 16k steps is the 16k run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.progress import progress

__all__ = ["TrainingCheckpoint", "recipe_key", "step_bar"]

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
LIVE_COPY = "live"


def recipe_key(
    config: dict[str, Any],
    *,
    seed: int,
    images: np.ndarray,
    code: list[ModuleType],
    ignore: Collection[str] = (),
) -> str:
    """SHA-256 over what determines a training run except its length: config without ``steps`` (and without
    the ``ignore`` keys: sampling or logging settings that never change the weights), seed, the training
    images' bytes and the source files of the modules that train."""
    skip = {"steps", *ignore}
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in config.items() if k not in skip}, sort_keys=True).encode())
    h.update(str(seed).encode())
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    for module in code:
        h.update(Path(module.__file__ or "").read_bytes())
    return h.hexdigest()


class TrainingCheckpoint:
    """Load, time and save one training run's state in ``work_dir`` (``None`` = resumption off).

    Args:
        work_dir (`Path`, *optional*): where ``state.pt`` and the dvclive copy live.
        key (`str`): `recipe_key` of the run; a state saved under another key is ignored (and replaced).
        every_seconds (`float`, defaults to 300): minimum wall time between two saves.
    """

    def __init__(self, work_dir: str | Path | None, key: str, every_seconds: float = 300.0) -> None:
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.key = key
        self.every_seconds = every_seconds
        self._last = time.monotonic()

    def load(self, max_step: int) -> dict[str, Any] | None:
        """The saved state if it belongs to this recipe and has not run past ``max_step``; else None."""
        if self.work_dir is None or not (self.work_dir / STATE_FILE).is_file():
            return None
        path = self.work_dir / STATE_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # not a torn write (saves are atomic): another torch version, a bad disk
            logger.warning("ignoring unreadable training state <path=%s> <error=%s>", path, exc)
            return None
        if state.get("key") != self.key:
            logger.info("training state in %s is from another recipe, code or data: starting at step 0", path)
            return None
        if int(state["step"]) > max_step:
            logger.info(
                "training state in %s is at step %d, beyond the %d asked for: starting from step 0",
                path, state["step"], max_step,
            )  # fmt: skip
            return None
        logger.info("resuming training from %s at step %d", path, state["step"])
        return state

    def restore_live(self, live_dir: str | Path | None) -> None:
        """Put back the dvclive folder as it was at the saved state (DVC removed it with the outputs)."""
        if self.work_dir is None or live_dir is None or not (self.work_dir / LIVE_COPY).is_dir():
            return
        shutil.rmtree(live_dir, ignore_errors=True)
        shutil.copytree(self.work_dir / LIVE_COPY, live_dir)

    def due(self) -> bool:
        return self.work_dir is not None and time.monotonic() - self._last >= self.every_seconds

    def save(self, state: dict[str, Any], live_dir: str | Path | None = None) -> None:
        """Write ``state`` (plus the key) atomically, with a copy of the dvclive folder beside it."""
        if self.work_dir is None:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.work_dir / (STATE_FILE + ".tmp")
        torch.save({**state, "key": self.key}, tmp)
        if live_dir is not None and Path(live_dir).is_dir():
            shutil.rmtree(self.work_dir / LIVE_COPY, ignore_errors=True)
            shutil.copytree(live_dir, self.work_dir / LIVE_COPY)
        os.replace(tmp, self.work_dir / STATE_FILE)
        self._last = time.monotonic()


def step_bar(start: int, total: int, desc: str) -> tqdm:
    """Progress over steps ``start..total-1`` that shows a resumed run's position in the whole run (a live bar
    on a terminal, a line a minute in a log: `pipeline.progress`)."""
    return progress(range(start, total), initial=start, total=total, desc=desc, unit="step")
