"""Stage `builtin_faces`: export the 100 LFW face crops shipped in scikit-image's wheel as PNGs.

They are the fresh-clone default source of real faces (no download, no ../shared needed).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.demo.faces import export_builtin_faces
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(out: Path = typer.Option(..., help="Output folder for lfw_NNN.png.")) -> None:
    """Write the built-in faces to OUT."""
    setup()
    export_builtin_faces(out)


if __name__ == "__main__":
    run(app)
