"""Benchmark a two-thread torch stage beside another busy process: OpenMP's wait policy vs one thread.

On this 2-core machine a DDIM reconstruction stage (two threads) slowed from ~27 to ~0.9 images/s while a
one-thread training job ran beside it (2026-12-05): an idle OpenMP worker busy-waits at every barrier, and
when its core is taken by the other job the barrier waits for the scheduler instead. This measures the
effect on the demo's DDIM workload (the ``adm-s`` UNet, batch 32, 32 px, forward passes in inference mode, as
one reconstruction step) in fresh interpreters (the wait policy is read when OpenMP starts):

* ``idle_2_threads``: nothing beside it (the reference), and ``idle_2_threads_passive`` (what the passive
  policy costs when the machine is free);
* ``busy_2_threads_default``: a one-thread matmul loop beside it, default environment (the naive way);
* ``busy_2_threads_passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep);
* ``busy_1_thread``: the same with one thread (``OMP_NUM_THREADS=1``).

Writes bench/results/threads.json with images/s per case and each case's speed over the naive one.
Run: ``python bench/bench_threads.py`` from the repo root on an otherwise idle machine (about 3 minutes).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "threads.json"
ROOT = Path(__file__).resolve().parents[1]
BATCH, PASSES, REPEATS = 32, 20, 3

WORKLOAD = f"""
import json, sys, time, torch
sys.path.insert(0, {str(ROOT)!r})
from pipeline.models.dm.unet import build_unet
torch.manual_seed(0)
unet = build_unet("adm-s", 32).eval()
x, t = torch.randn({BATCH}, 3, 32, 32), torch.full(({BATCH},), 500)
with torch.inference_mode():
    unet(x, t)  # warm-up
    best = float("inf")
    for _ in range({REPEATS}):
        t0 = time.perf_counter()
        for _ in range({PASSES}):
            unet(x, t)
        best = min(best, time.perf_counter() - t0)
print(json.dumps({{"threads": torch.get_num_threads(), "images_per_s": {BATCH * PASSES} / best}}))
"""

NEIGHBOUR = """
import torch
torch.set_num_threads(1)
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""


def run_case(env_overrides: dict[str, str], *, busy: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    neighbour = None
    if busy:
        neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env={**env, "OMP_NUM_THREADS": "1"})
        time.sleep(3.0)  # let it start computing
    try:
        out = subprocess.run(
            [sys.executable, "-c", WORKLOAD],
            env={**env, **env_overrides},
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    cases = {
        "idle_2_threads": ({"OMP_NUM_THREADS": "2"}, False),
        "idle_2_threads_passive": ({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}, False),
        "busy_2_threads_default": ({"OMP_NUM_THREADS": "2"}, True),
        "busy_2_threads_passive": ({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}, True),
        "busy_1_thread": ({"OMP_NUM_THREADS": "1"}, True),
    }
    results = {}
    for name, (env, busy) in cases.items():
        results[name] = run_case(env, busy=busy)
        print(name, results[name], flush=True)
    naive = results["busy_2_threads_default"]["images_per_s"]
    for r in results.values():
        r["speed_over_naive"] = r["images_per_s"] / naive
    report = {
        "what": "adm-s UNet forward, batch 32, 32 px (a DDIM reconstruction step) beside a busy 1-thread job",
        "batch": BATCH,
        "passes": PASSES,
        "repeats_best_of": REPEATS,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cases": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
