"""Benchmark of the cache layout and read paths; writes ``bench/results/cache.json``.

Run from the repo root: ``python bench/bench_cache.py [--n 4096] [--res 64]``.

1. For a few (chunk_images, shard_images) layouts: write an input store and two reconstruction stores
   (``ddim``/``gan``, through ``build_recon_store`` with a cheap blur as the "reconstructor"), then count
   files, and time full reads and random batch-32 reads of image + two recons.
2. Training pattern (one epoch of shuffled batches of 32 of ``image``, ``ddim.recon``, ``gan.recon``):
   ``CacheReader.batches`` in memory mode (load time included), in chunk-window mode, and through
   ``make_loader``, against decoding the same three images per row from PNG files with PIL.
Images are 64x64 crops of scikit-image's sample photos (natural-image statistics, so compression ratios
mean something); the page cache is warm (files were just written), as on a training machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from pipeline.cache.loader import make_loader
from pipeline.cache.reader import CacheReader
from pipeline.cache.store import write_input_store
from pipeline.cache.writer import build_recon_store

FIELDS = ["image", "ddim.recon", "gan.recon"]


def make_images(n: int, res: int, seed: int = 0) -> np.ndarray:
    """``n`` random ``res``-px crops (random flips) of scikit-image's colour sample photos."""
    srcs = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, res, res), np.uint8)
    for i in range(n):
        s = srcs[rng.integers(len(srcs))]
        y, x = rng.integers(0, s.shape[0] - res), rng.integers(0, s.shape[1] - res)
        crop = s[y : y + res, x : x + res]
        out[i] = (crop[:, ::-1] if rng.random() < 0.5 else crop).transpose(2, 0, 1)
    return out


def blur_recon(strength: float):
    """A cheap deterministic stand-in for a reconstructor: a 3x3 box blur mixed with the input."""

    def fn(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32) / 127.5 - 1.0
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        h, w = x.shape[2:]
        blur = sum(p[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
        return (1 - strength) * x + strength * blur

    return fn


def bench_codecs(images: np.ndarray) -> list[dict]:
    """Blosc zstd variants on 1,024 images (uint8) and their blur residual (float16): ratio and speed."""
    from numcodecs import Blosc

    x = images[:1024]
    xf = x.astype(np.float32) / 127.5 - 1.0
    resid = (blur_recon(0.5)(x) - xf).astype(np.float16)
    out = []
    for name, arr in (("uint8 image", x), ("float16 residual", resid)):
        raw = np.ascontiguousarray(arr).tobytes()
        for shuffle, label in (
            (Blosc.NOSHUFFLE, "noshuffle"),
            (Blosc.SHUFFLE, "shuffle"),
            (Blosc.BITSHUFFLE, "bitshuffle"),
        ):
            for level in (3, 5):
                codec = Blosc(cname="zstd", clevel=level, shuffle=shuffle)
                t = time.perf_counter()
                enc = codec.encode(raw)
                te = time.perf_counter() - t
                t = time.perf_counter()
                codec.decode(enc)
                td = time.perf_counter() - t
                mb = len(raw) / 2**20
                ratio = round(len(raw) / len(enc), 2)
                out.append({"array": name, "shuffle": label, "clevel": level, "ratio": ratio,
                            "encode_mb_s": round(mb / te), "decode_mb_s": round(mb / td)})  # fmt: skip
    return out


def dir_stats(root: Path) -> tuple[int, float]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files) / 2**20


def bench_layout(tmp: Path, images: np.ndarray, ids: list[str], chunk: int, shard: int) -> dict:
    root = tmp / f"c{chunk}_s{shard}"
    inp = root / "images.zarr"
    raw_mb = images.nbytes / 2**20
    t = time.perf_counter()
    write_input_store(inp, images, ids, {"kind": "bench"}, chunk_images=chunk, shard_images=shard)
    t_in = time.perf_counter() - t
    recs, t_rec = {}, 0.0
    for name, strength in (("ddim", 0.5), ("gan", 0.9)):
        t = time.perf_counter()
        build_recon_store(
            inp, root / f"{name}.zarr", reconstruct=blur_recon(strength), provenance={"kind": name},
            work_dir=tmp / "_work" / f"{chunk}_{shard}_{name}", chunk_images=chunk, shard_images=shard,
            progress=False,
        )  # fmt: skip
        t_rec += time.perf_counter() - t
        recs[name] = root / f"{name}.zarr"
    files, mb = dir_stats(root)
    reader = CacheReader(inp, recs, verify=False)
    t = time.perf_counter()
    full = reader.read(np.arange(len(images)), [*FIELDS, "ddim.residual", "gan.residual"])
    t_full = time.perf_counter() - t
    full_mb = sum(v.nbytes for v in full.values()) / 2**20
    rng = np.random.default_rng(0)
    lat = []
    for _ in range(20):
        idx = np.sort(rng.choice(len(images), 32, replace=False))
        t = time.perf_counter()
        reader.read(idx, FIELDS)
        lat.append(time.perf_counter() - t)
    res = {
        "chunk_images": chunk,
        "shard_images": shard,
        "files": files,
        "stored_mb": round(mb, 1),
        "raw_mb": round(raw_mb * 5, 1),  # image + 2 x (recon uint8 + residual float16 = 3x)
        "write_input_mb_s": round(raw_mb / t_in, 1),
        "build_recon_mb_s_incl_blur": round(2 * 3 * raw_mb / t_rec, 1),
        "full_read_mb_s": round(full_mb / t_full, 1),
        "random_batch32_3fields_ms": round(1000 * float(np.median(lat)), 1),
    }
    logging.info("layout %s", res)
    return res


def epoch_rate(batches) -> float:
    t, n = time.perf_counter(), 0
    for b in batches:
        n += len(b["index"])
    return n / (time.perf_counter() - t)


def bench_png(tmp: Path, arrays: dict[str, np.ndarray], batch: int = 32) -> tuple[float, float]:
    """Write each field's images as PNG, then one shuffled epoch decoding all three per row."""
    n = len(arrays["image"])
    t = time.perf_counter()
    for f, arr in arrays.items():
        d = tmp / "png" / f
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(arr[i].transpose(1, 2, 0)).save(d / f"{i:06d}.png")
    write_rate = n * len(arrays) / (time.perf_counter() - t)
    order = np.random.default_rng(0).permutation(n)
    t = time.perf_counter()
    for b in range(0, n, batch):
        rows = order[b : b + batch]
        out = {f: np.stack([np.asarray(Image.open(tmp / "png" / f / f"{i:06d}.png")) for i in rows])
               for f in arrays}  # fmt: skip
        assert out["image"].shape[0] > 0
    return n / (time.perf_counter() - t), write_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="images per store")
    ap.add_argument("--res", type=int, default=64, help="image side in pixels")
    ap.add_argument("--out", type=Path, default=Path("bench/results/cache.json"), help="results JSON")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("pipeline.cache.writer", "pipeline.cache.store"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    images = make_images(args.n, args.res)
    ids = [f"img{i:06d}" for i in range(args.n)]
    tmp = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    try:
        codecs = bench_codecs(images)
        layouts = [
            bench_layout(tmp, images, ids, c, s) for c, s in ((64, 1024), (16, 1024), (64, 256), (256, 4096))
        ]
        root = tmp / "c64_s1024"
        recs = {"ddim": root / "ddim.zarr", "gan": root / "gan.zarr"}
        train: dict[str, float] = {}
        r = CacheReader(root / "images.zarr", recs, verify=False)
        train["memory_epoch0_incl_load_img_s"] = epoch_rate(r.batches(FIELDS, 32, seed=0, epoch=0))
        train["memory_epoch1_img_s"] = epoch_rate(r.batches(FIELDS, 32, seed=0, epoch=1))
        r2 = CacheReader(root / "images.zarr", recs, verify=False)
        train["chunk_window_img_s"] = epoch_rate(r2.batches(FIELDS, 32, memory_budget_mb=0.0))
        train["loader_workers0_img_s"] = epoch_rate(
            make_loader(root / "images.zarr", recs, FIELDS, batch_size=32, verify=False)
        )
        t = time.perf_counter()
        CacheReader(root / "images.zarr", recs, verify=True)
        train["verify_all_shards_s"] = time.perf_counter() - t
        png_rate, png_write = bench_png(tmp, r.load(FIELDS))
        train["png_decode_img_s"] = png_rate
        train["png_write_files_s"] = png_write
        ratio = {
            k: v / png_rate for k, v in train.items() if k.endswith("_img_s") and not k.startswith("png")
        }
        result = {
            "n_images": args.n,
            "resolution": args.res,
            "fields_per_row": FIELDS,
            "codecs": codecs,
            "layouts": layouts,
            "train_pattern": {k: round(v, 2) for k, v in train.items()},
            "ratio_vs_png": {k: round(v, 2) for k, v in ratio.items()},
            "recommended": "CacheReader.batches (memory mode if it fits); chunk 64 / shard 1024",
            "ratio_recommended_epoch0_vs_png": round(ratio["memory_epoch0_incl_load_img_s"], 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        "training-pattern read vs PNG decode:"
        f" {result['ratio_recommended_epoch0_vs_png']:.1f}x (must be >= 5x)"
    )


if __name__ == "__main__":
    main()
