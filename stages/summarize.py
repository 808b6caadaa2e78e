"""Stage `summarize`: Table I / Table III style summaries and the paper-claims check from every evaluation.

Writes table1.md/.csv, table3.md/.csv and claims.md (claim 1: Multi-Reconstruction vs CNNSpot and the
single-reconstruction ablations on unseen generators; claim 2: own-family reconstruction error; a warning when
the trivial control comes close to the best detector).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.metrics.tables import write_summary
from stages._common import configure_logging, run

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    eval_dir: Path = typer.Option(..., help="Folder with one sub-folder per detector holding metrics.json."),
    out: Path = typer.Option(..., help="Output folder (data/reports)."),
    recon_report: list[Path] = typer.Option(
        [], help="Optional reconstruction report JSON file(s), quoted in claims.md (repeatable)."
    ),
    generator_report: Path | None = typer.Option(
        None, help="Optional data/reports/generators.json (demo_report stage): its verdicts open claims.md."
    ),
) -> None:
    """Summarise every evaluation under EVAL_DIR into OUT."""
    configure_logging()
    write_summary(eval_dir, out, recon_reports=list(recon_report), generator_report=generator_report)


if __name__ == "__main__":
    run(app)
