"""Stage `train_encoder`: train the GAN-inversion encoder (w+ and feature code) for the frozen demo
StyleGAN2."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from pipeline.errors import ConfigError
from pipeline.models.encoder import EncoderTrainConfig, train_encoder_from_faces
from pipeline.params import get
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    generator: Path = typer.Option(..., help="StyleGAN2 generator folder (output of train_generator)."),
    faces: Path = typer.Option(
        ..., help="Demo faces folder: JPEGs + labels.csv (path, split); uses split=train."
    ),
    out: Path = typer.Option(
        ..., help="Output encoder folder (model.safetensors, config.json, report.json)."
    ),
    live: Path | None = typer.Option(None, help="dvclive folder for the training curves (optional)."),
) -> None:
    """Train the encoder on the faces of split `train` (resized to data.resolution) for the frozen generator.

    Params read: encoder.* (EncoderTrainConfig fields), data.resolution, base.seed, base.device.
    """
    params, device = setup()
    enc = get(params, "encoder", {}) or {}
    unknown = sorted(set(enc) - {f.name for f in fields(EncoderTrainConfig)})
    if unknown:
        raise ConfigError(f"unknown keys under `encoder` in params.yaml: {unknown}.")
    config = EncoderTrainConfig(**enc)
    train_encoder_from_faces(
        config,
        generator,
        faces,
        out,
        resolution=int(get(params, "data.resolution")),
        seed=int(get(params, "base.seed")),
        device=device,
        live_dir=live,
    )


if __name__ == "__main__":
    run(app)
