"""Stage `assemble`: lay out the demo's real faces and fakes as one ordinary list-layout dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.demo.assemble import assemble_dataset
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    faces: Path = typer.Option(..., help="Demo faces folder."),
    fakes: list[Path] = typer.Option(
        ..., help="Fake folders data/demo/fakes/<generator> (repeat the option)."
    ),
    out: Path = typer.Option(..., help="Output dataset root: <generator>/<split>/*.jpg + labels.csv."),
) -> None:
    """Copy (no re-encoding) every real and fake image into OUT and write labels.csv."""
    setup()
    assemble_dataset(faces, {f.name: f for f in fakes}, out)


if __name__ == "__main__":
    run(app)
