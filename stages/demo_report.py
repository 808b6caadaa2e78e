"""DVC stage ``demo_report``: the demo generators' training and sample-quality table and figure."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipeline.demo.report import write_generator_report
from stages._common import configure_logging, run

app = typer.Typer(
    add_completion=False,
    help="Tabulate every demo generator's training and its fakes' statistics vs real faces.",
)


@app.command()
def main(
    model: list[Path] = typer.Option(..., help="Generator folder, data/models/<g> (repeat per generator)."),
    fakes: list[Path] = typer.Option(..., help="Its fakes, data/demo/fakes/<g> (same order as --model)."),
    faces: Path | None = typer.Option(None, help="data/demo/faces, for a panel of real test faces."),
    out: Path = typer.Option(Path("data/reports"), help="Writes generators.json/.md/.png here."),
) -> None:
    """Write data/reports/generators.{json,md,png}; read it before trusting any detector table."""
    configure_logging()
    summary = write_generator_report(list(model), list(fakes), faces, out)
    if summary["failing"]:
        logging.warning("generators failing the statistics/copy check: %s (see %s)", summary["failing"], out)


if __name__ == "__main__":
    run(app)
