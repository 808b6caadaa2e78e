"""Stage `faces`: choose the demo's real faces, resize, JPEG-encode and split them."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.demo.faces import FacesConfig, write_faces
from pipeline.params import get
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    source: str = typer.Option(
        ..., help="Folder of real face images, or 'builtin' (LFW crops in scikit-image)."
    ),
    out: Path = typer.Option(..., help="Output folder: <split>/*.jpg and labels.csv."),
) -> None:
    """Write data.resolution-sized JPEG faces split into train/val/test (counts from demo.faces)."""
    params, _ = setup()
    faces = get(params, "demo.faces")
    cfg = FacesConfig(
        source=source,
        resolution=int(get(params, "data.resolution")),
        n_train=int(faces["n_train"]),
        n_val=int(faces["n_val"]),
        n_test=int(faces["n_test"]),
        asian_only=bool(faces.get("asian_only", False)),
        jpeg_quality=int(get(params, "demo.jpeg_quality")),
        seed=int(get(params, "base.seed")),
    )
    write_faces(cfg, out)


if __name__ == "__main__":
    run(app)
