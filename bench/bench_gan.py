"""Benchmark GAN inversion at demo size: batched encoder inversion vs a per-image loop, opt_steps cost, and
the two modulated-convolution forms. Writes bench/results/gan.json.

Run from the repo root: ``python bench/bench_gan.py [--generator DIR --encoder DIR]``. Without folders it
builds demo-sized models with random weights (speed does not depend on the weights) and measures the same
`GanReconstructor` code path the `recon_gan` stage uses.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipeline.inversion.gan import GanReconstructor
from pipeline.models.checkpoint import save_checkpoint, weights_hash
from pipeline.models.encoder import FeatureStyleEncoder
from pipeline.models.gan.stylegan2 import Generator


def _demo_models(root: Path, resolution: int) -> tuple[Path, Path]:
    torch.manual_seed(0)
    g = Generator(resolution, 64, 2, max_channels=64)
    g_dir = save_checkpoint(root / "gen", g, kind="stylegan2", config=g.arch_config)
    enc = FeatureStyleEncoder(
        resolution=resolution, n_latent=g.n_latent, style_dim=g.style_dim, feature_res=8,
        feature_channels=g.feature_shape(8)[0], generator_hash=weights_hash(g_dir),
    )  # fmt: skip
    e_dir = save_checkpoint(root / "enc", enc, kind="feature_style_encoder", config=enc.arch_config)
    return g_dir, e_dir


def _rate(fn, images: np.ndarray, batch: int, repeats: int = 2) -> tuple[float, np.ndarray]:
    """Best-of-``repeats`` images/s of ``fn`` over ``images`` in batches of ``batch``."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = np.concatenate([fn(images[i : i + batch]) for i in range(0, len(images), batch)])
        best = min(best, time.perf_counter() - t0)
    return len(images) / best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--generator", type=Path, default=None, help="stylegan2 generator folder (optional)")
    ap.add_argument("--encoder", type=Path, default=None, help="encoder folder for that generator (optional)")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--n", type=int, default=256, help="images for the batched measurement")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--opt-steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("bench/results/gan.json"))
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.n, 3, args.resolution, args.resolution), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        if args.generator is None or args.encoder is None:
            g_dir, e_dir = _demo_models(Path(tmp), args.resolution)
            source = "random demo-size weights (G style_dim 64, n_mlp 2, 64 ch; encoder width 32/128)"
        else:
            g_dir, e_dir, source = args.generator, args.encoder, f"{args.generator} + {args.encoder}"
        rec = GanReconstructor(g_dir, e_dir, resolution=args.resolution)
        g_params = sum(p.numel() for p in rec.generator.parameters())
        e_params = sum(p.numel() for p in rec.encoder.parameters())
        rec(images[:4])  # warm-up
        batched, out_b = _rate(rec, images, args.batch_size)
        n_loop = min(64, args.n)
        loop, out_l = _rate(rec, images[:n_loop], 1)
        diff = np.abs(out_b[:n_loop] - out_l)

        opt = GanReconstructor(g_dir, e_dir, resolution=args.resolution, opt_steps=args.opt_steps)
        n_opt = min(64, args.n)
        opt_rate, _ = _rate(opt, images[:n_opt], args.batch_size, repeats=1)

        # Modulation forms: scale activations (default) vs per-sample grouped conv, synthesis only.
        g = rec.generator
        w = g.mapping(torch.randn(args.batch_size, g.style_dim))[:, None].expand(-1, g.n_latent, -1)
        times = {}
        with torch.inference_mode():
            for mode in ("scale", "grouped"):
                g.set_modulation(mode)
                g.synthesis(w)
                t0 = time.perf_counter()
                for _ in range(5):
                    y = g.synthesis(w)
                times[mode] = (time.perf_counter() - t0) / 5
                times[f"{mode}_out"] = y
            g.set_modulation("scale")
        mod_diff = float((times.pop("scale_out") - times.pop("grouped_out")).abs().max())

    result = {
        "what": "GAN inversion (FeatureStyleEncoder forward + StyleGAN2 synthesis), float32, CPU",
        "models": source,
        "generator_params": g_params,
        "encoder_params": e_params,
        "resolution": args.resolution,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "batched": {"batch_size": args.batch_size, "images": args.n, "images_per_s": round(batched, 1)},
        "per_image_loop": {"batch_size": 1, "images": n_loop, "images_per_s": round(loop, 1)},
        "speedup_batched_vs_loop": round(batched / loop, 2),
        "batched_vs_loop_abs_diff": {"max": float(diff.max()), "mean": float(diff.mean())},
        "opt_steps": {
            "steps": args.opt_steps,
            "images_per_s": round(opt_rate, 2),
            "seconds_per_image_per_step": round(1.0 / opt_rate / max(args.opt_steps, 1), 5),
        },
        "modulation_synthesis_s_per_batch": {k: round(v, 4) for k, v in times.items()},
        "modulation_speedup_scale_vs_grouped": round(times["grouped"] / times["scale"], 2),
        "modulation_max_abs_diff": mod_diff,
        "note": "shared 2-core machine: numbers vary up to ~3x with other load; see CPU-FACTS.md",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
