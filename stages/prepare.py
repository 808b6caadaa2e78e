"""Stage `prepare`: ingest one dataset into a Parquet manifest, the input cache and a format-bias audit.

Reads `datasets.<DATASET>`, `prepare.*`, `data.resolution`, `cache.chunk_images`, `cache.shard_images` and
`base.seed` from params.yaml (schema: pipeline/data/prepare.py, docs/snippets/prepare.yaml). Relative dataset
roots are resolved against the folder holding params.yaml (the repo root).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.data.config import parse_dataset_config, parse_prepare_config
from pipeline.data.prepare import prepare_dataset
from pipeline.params import get, load_params
from stages._common import configure_logging, run

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    dataset: str = typer.Argument(..., help="Dataset name: a key under `datasets` in params.yaml."),
    out: Path = typer.Option(
        ...,
        help="Output folder (data/prepared/DATASET): manifest.parquet, images.zarr, audit.json, audit.md.",
    ),
    params_file: Path = typer.Option(
        Path("params.yaml"), "--params", help="Params file; dataset roots are relative to its folder."
    ),
) -> None:
    """Scan, validate, decode and cache every file of DATASET; bad files become rejected manifest rows.

    Reads datasets.DATASET, prepare.*, data.resolution, cache.chunk_images, cache.shard_images and base.seed.
    Fails only on a configuration error or an empty required split.
    """
    configure_logging()
    params = load_params(params_file)
    ds = parse_dataset_config(
        dataset,
        get(params, f"datasets.{dataset}"),
        base_dir=params_file.resolve().parent,
        default_seed=int(get(params, "base.seed")),
    )
    settings = parse_prepare_config(
        get(params, "prepare", {}),
        resolution=get(params, "data.resolution"),
        chunk_images=get(params, "cache.chunk_images"),
        shard_images=get(params, "cache.shard_images"),
    )
    prepare_dataset(ds, settings, out)


if __name__ == "__main__":
    run(app)
