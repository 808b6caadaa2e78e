"""Stage `sample@<name>`: draw a generator's fakes, JPEG them like the reals, check their statistics."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.demo.synth import FakeCounts, write_fakes
from pipeline.params import get
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    name: str = typer.Argument(..., help="Generator name: a key of demo.generators."),
    model: Path = typer.Option(..., help="Trained generator folder."),
    faces: Path = typer.Option(..., help="Demo faces folder (real statistics to compare with)."),
    out: Path = typer.Option(
        ..., help="Output folder: <split>/*.jpg, labels.csv, samples.png, quality.json."
    ),
) -> None:
    """Sample counts from demo.sample; role train -> train/val/test, role test -> test only."""
    params, device = setup()
    s = get(params, "demo.sample")
    counts = FakeCounts(
        n_train=int(s["n_train"]),
        n_val=int(s["n_val"]),
        n_test_id=int(s["n_test_id"]),
        n_test=int(s["n_test"]),
    )
    write_fakes(
        model,
        faces,
        out,
        counts,
        seed=int(get(params, "base.seed")) + 1000 + sum(map(ord, name)),
        batch_size=int(s["batch_size"]),
        device=device,
        jpeg_quality=int(get(params, "demo.jpeg_quality")),
        tolerance=float(s["tolerance"]),
    )


if __name__ == "__main__":
    run(app)
