"""Seconds per training step of the detector backbones per stem at the demo resolution (CPU sizing).

Run: ``python -m bench.bench_detector [--res 32] [--steps 3]``; writes ``bench/results/detector_stems.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pipeline.models.resnet import STEMS, build_resnet


def time_step(backbone: str, stem: str, res: int, batch: int, steps: int) -> float:
    """Median seconds of one Adam step (forward + backward) on random 9-channel input."""
    torch.manual_seed(0)
    model = build_resnet(backbone, in_channels=9, num_classes=3, stem=stem)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 9, res, res)
    y = torch.randint(0, 3, (batch,))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[1:])
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backbones", default="resnet18,resnet50")
    parser.add_argument("--out", type=Path, default=Path("bench/results/detector_stems.json"))
    args = parser.parse_args()
    rows = []
    for backbone in args.backbones.split(","):
        for stem in STEMS:
            s = time_step(backbone, stem, args.res, args.batch, args.steps)
            row = {"backbone": backbone, "stem": stem, "res": args.res, "batch": args.batch, "s_per_step": s}
            rows.append(row)
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    args.out.write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
