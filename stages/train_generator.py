"""Stage `train_generator@<name>`: train one demo generator (GAN or DM) on the real training faces."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.demo.faces import load_faces
from pipeline.demo.generators import GeneratorSpec, train_generator
from pipeline.params import get
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    name: str = typer.Argument(..., help="Generator name: a key of demo.generators in params.yaml."),
    faces: Path = typer.Option(..., help="Demo faces folder (output of the `faces` stage)."),
    out: Path = typer.Option(..., help="Output model folder (checkpoint, samples.png, generator.json)."),
    live: Path = typer.Option(None, help="dvclive folder for training curves (optional)."),
    work: Path = typer.Option(
        None,
        help="Folder for the resumable training state (default data/_work/train/<name>): an interrupted run "
        "continues from it, and raising `steps` trains only the extra steps.",
    ),
) -> None:
    """Train demo.generators.<name> with its `train` options; seed = base.seed + a per-name offset."""
    params, device = setup()
    spec = GeneratorSpec.from_params(name, get(params, f"demo.generators.{name}"))
    images = load_faces(faces, "train")
    seed = int(get(params, "base.seed")) + sum(map(ord, name))
    train_generator(
        spec,
        images,
        out,
        resolution=int(get(params, "data.resolution")),
        jpeg_quality=int(get(params, "demo.jpeg_quality")),
        seed=seed,
        device=device,
        live_dir=live,
        work_dir=work if work is not None else Path("data/_work/train") / name,
    )


if __name__ == "__main__":
    run(app)
