"""Stage `evaluate`: score one trained detector on the test split; metrics JSON, predictions, plot data.

Reads `base.device` and `evaluate.batch_size` (default 128) from params.yaml. Reads only the manifest, the
Zarr caches and the detector folder. Reconstruction stores given but not used by the detector still feed the
per-family reconstruction error (`recon_mse`) in metrics.json.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.detectors.run import evaluate_from_cache
from pipeline.device import resolve_device
from pipeline.params import get, load_params
from stages._common import configure_logging, run

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    detector: str = typer.Argument(..., help="Detector name (the key under `detectors`), used in reports."),
    dataset_dir: Path = typer.Option(
        ..., help="Prepared dataset folder (data/prepared/DS) holding manifest.parquet and images.zarr."
    ),
    ddim: Path | None = typer.Option(None, help="DDIM reconstruction store (data/cache/DS/ddim.zarr)."),
    gan: Path | None = typer.Option(None, help="GAN reconstruction store (data/cache/DS/gan.zarr)."),
    model: Path = typer.Option(..., help="Trained detector folder (data/detectors/DETECTOR)."),
    out: Path = typer.Option(
        ..., help="Output folder: metrics.json, predictions.parquet, confusion.csv, roc.csv, *.png."
    ),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Params file."),
) -> None:
    """Evaluate DETECTOR on the test split (Table I metrics + binary view)."""
    configure_logging()
    params = load_params(params_file)
    stores = {k: v for k, v in (("ddim", ddim), ("gan", gan)) if v is not None}
    evaluate_from_cache(
        detector,
        model_dir=model,
        manifest=dataset_dir / "manifest.parquet",
        input_store=dataset_dir / "images.zarr",
        recon_stores=stores,
        out_dir=out,
        device=resolve_device(str(get(params, "base.device", "auto"))),
        batch_size=int(get(params, "evaluate.batch_size", 128)),
    )


if __name__ == "__main__":
    run(app)
