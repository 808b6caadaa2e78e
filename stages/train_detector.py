"""Stage `train_detector`: train one detector (a CNN composition or the trivial control) from the caches.

Reads `detectors.<DETECTOR>` (composition + overrides), the shared `train.*` recipe, `base.seed` and
`base.device` from params.yaml. Inputs come only from the manifest and the Zarr caches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from pipeline.detectors.config import parse_detector_spec
from pipeline.detectors.run import train_from_cache
from pipeline.device import resolve_device
from pipeline.params import get, load_params
from stages._common import configure_logging, run

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    detector: str = typer.Argument(..., help="Detector name: a key under `detectors` in params.yaml."),
    dataset_dir: Path = typer.Option(
        ..., help="Prepared dataset folder (data/prepared/DS) holding manifest.parquet and images.zarr."
    ),
    ddim: Path | None = typer.Option(None, help="DDIM reconstruction store (data/cache/DS/ddim.zarr)."),
    gan: Path | None = typer.Option(None, help="GAN reconstruction store (data/cache/DS/gan.zarr)."),
    out: Path = typer.Option(..., help="Output folder: model.safetensors/config.json + train.json."),
    live: Path | None = typer.Option(None, help="dvclive folder for the training curves."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Params file."),
) -> None:
    """Train DETECTOR on the train split, select on val, save the best checkpoint to OUT."""
    configure_logging()
    params = load_params(params_file)
    spec = parse_detector_spec(
        detector,
        get(params, f"detectors.{detector}"),
        get(params, "train"),
        seed=int(get(params, "base.seed")),
    )
    stores = {k: v for k, v in (("ddim", ddim), ("gan", gan)) if v is not None}
    report = train_from_cache(
        detector,
        spec.composition,
        spec.train,
        manifest=dataset_dir / "manifest.parquet",
        input_store=dataset_dir / "images.zarr",
        recon_stores=stores,
        out_dir=out,
        live_dir=live,
        device=resolve_device(str(get(params, "base.device", "auto"))),
        cnnspot=spec.cnnspot,
    )
    logging.getLogger(__name__).info(
        "trained %s: %s",
        detector,
        json.dumps(
            {k: report.get(k) for k in ("best_epoch", "best_val_loss", "best_val_acc", "C") if k in report}
        ),
    )


if __name__ == "__main__":
    run(app)
