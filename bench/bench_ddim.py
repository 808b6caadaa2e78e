"""Benchmark DDIM inversion + reconstruction at the demo size: batched default vs a DIRE-style loop.

32 px, the ``adm-s`` UNet preset, 10 steps. Measures images/s of the default path (batch 32,
inference_mode, channels_last) vs batch 1 without channels_last (how DIRE's per-image loop runs), their
max/mean abs output difference in float32, achieved UNet GFLOP/s (FlopCounterMode) vs the ~200 GFLOP/s
fp32 peak of CPU-FACTS.md, and bf16 autocast throughput with its error relative to the residuals
(mean |bf16 - fp32| / mean |fp32 - x|). The model is trained for a short while on UTKFace faces (or
random smooth images without ../shared) so its eps field is not random. Writes bench/results/ddim.json.

Run: ``python bench/bench_ddim.py`` from the repo root (about two minutes on an idle 2-core CPU).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.demo.dm_training import DmTrainConfig, train_dm
from pipeline.inversion.ddim import DDIMReconstructor

RES, STEPS, N = 32, 10, 64
UTK = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"
OUT = Path(__file__).resolve().parent / "results" / "ddim.json"


def load_faces(n: int) -> np.ndarray:
    from PIL import Image

    files = sorted(glob.glob(str(UTK / "*.jpg")))[:n]
    if not files:
        rng = np.random.default_rng(0)
        return np.clip(
            rng.normal(128, 40, (n, 3, 1, 1)) + rng.normal(0, 10, (n, 3, RES, RES)), 0, 255
        ).astype(np.uint8)
    return np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((RES, RES), Image.BOX)).transpose(2, 0, 1)
            for f in files
        ]
    )


def timed(rec: DDIMReconstructor, images: np.ndarray) -> tuple[np.ndarray, float]:
    rec(images[: rec.batch_size])  # warm-up with the timed batch shape (oneDNN primitives, allocator)
    t0 = time.perf_counter()
    out = rec(images)
    return out, len(images) / (time.perf_counter() - t0)


def unet_gflop_per_image(rec: DDIMReconstructor) -> float:
    x = torch.zeros(8, 3, RES, RES)
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        rec.unet(x, torch.tensor(500), return_dict=False)
    return fc.get_total_flops() / 8 / 1e9


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    faces = load_faces(512)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "adm"
        cfg = DmTrainConfig(unet="adm-s", resolution=RES, steps=int(os.environ.get("BENCH_TRAIN_STEPS", 150)),
                            lr=1e-3, warmup=30, sample_steps=STEPS, log_every=50)  # fmt: skip
        train_dm(cfg, faces, model, seed=0, device="cpu")
        images = faces[:N]
        x = images.astype(np.float32) / 127.5 - 1.0

        batched = DDIMReconstructor(model, steps=STEPS, batch_size=32, device="cpu", resolution=RES)
        out_b, ips_b = timed(batched, images)
        naive = DDIMReconstructor(
            model, steps=STEPS, batch_size=1, device="cpu", channels_last=False, resolution=RES
        )
        out_n, ips_n = timed(naive, images[:16])
        plain32 = DDIMReconstructor(
            model, steps=STEPS, batch_size=32, device="cpu", channels_last=False, resolution=RES
        )
        _, ips_plain = timed(plain32, images)
        bf16 = DDIMReconstructor(
            model, steps=STEPS, batch_size=32, device="cpu", precision="bf16", resolution=RES
        )
        out_bf, ips_bf = timed(bf16, images)
        gflop = unet_gflop_per_image(batched)

    diff = np.abs(out_b[:16] - out_n)
    resid = np.abs(out_b - x).mean()
    calls = 2 * STEPS
    result = {
        "setup": {
            "resolution": RES,
            "steps": STEPS,
            "unet": "adm-s",
            "train_steps": cfg.steps,
            "images": N,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "load_avg_1min": os.getloadavg()[0],
            "cpu_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        },
        "images_per_s": {
            "batched_default_b32_channels_last": round(ips_b, 2),
            "batched_b32_contiguous": round(ips_plain, 2),
            "naive_b1": round(ips_n, 2),
            "bf16_autocast_b32": round(ips_bf, 2),
        },
        "speedup_batched_vs_naive": round(ips_b / ips_n, 2),
        "fp32_batched_vs_naive_abs_diff": {"max": float(diff.max()), "mean": float(diff.mean())},
        "unet_gflop_per_image_call": round(gflop, 4),
        "achieved_gflop_s": {
            "batched": round(gflop * calls * ips_b, 1),
            "naive": round(gflop * calls * ips_n, 1),
            "bf16": round(gflop * calls * ips_bf, 1),
            "fp32_peak_reference": 200,
        },
        "bf16": {
            "mean_abs_vs_fp32": float(np.abs(out_bf - out_b).mean()),
            "max_abs_vs_fp32": float(np.abs(out_bf - out_b).max()),
            "mean_abs_residual_fp32": float(resid),
            "relative_to_residual": float(np.abs(out_bf - out_b).mean() / resid),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
