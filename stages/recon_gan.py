"""Stage `recon_gan@<dataset>`: GAN inversion + reconstruction of every image of a dataset into the cache."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.inversion.gan import GanReconstructor, run_recon_gan
from pipeline.params import get
from stages._common import run, setup

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    dataset: str = typer.Argument(..., help="Dataset name (for logs and the report)."),
    input: Path = typer.Option(..., help="Input image store, e.g. data/prepared/DATASET/images.zarr."),
    generator: Path = typer.Option(..., help="StyleGAN2 generator folder (recon.gan.generator)."),
    encoder: Path = typer.Option(..., help="Encoder folder trained for that generator (recon.gan.encoder)."),
    out: Path = typer.Option(..., help="Output recon store, e.g. data/cache/DATASET/gan.zarr."),
    work_dir: Path = typer.Option(
        ..., help="Partial-work folder outside --out, e.g. data/_work/recon_gan/DATASET."
    ),
    report: Path | None = typer.Option(
        None, help="JSON report path: images/s, MSE/PSNR per family and generator."
    ),
    manifest: Path | None = typer.Option(
        None, help="manifest.parquet of the dataset, to group the report by family."
    ),
    own_generator: str | None = typer.Option(
        None,
        help="Name of --generator in the manifest's `generator` column (premise check: own images best).",
    ),
) -> None:
    """GAN-invert and reconstruct every image of --input into --out (resumable via --work-dir).

    Params read: recon.gan.opt_steps, recon.gan.opt_lr, recon.gan.perceptual_weight, recon.batch_size,
    cache.chunk_images, cache.shard_images, data.resolution, base.seed, base.device.
    """
    params, device = setup()
    rec = GanReconstructor(
        generator,
        encoder,
        resolution=int(get(params, "data.resolution")),
        opt_steps=int(get(params, "recon.gan.opt_steps", 0)),
        opt_lr=float(get(params, "recon.gan.opt_lr", 0.01)),
        perceptual_weight=float(get(params, "recon.gan.perceptual_weight", 0.5)),
        seed=int(get(params, "base.seed")),
        device=device,
    )
    run_recon_gan(
        input_store=input,
        out=out,
        work_dir=work_dir,
        reconstructor=rec,
        batch_size=int(get(params, "recon.batch_size")),
        chunk_images=int(get(params, "cache.chunk_images")),
        shard_images=int(get(params, "cache.shard_images")),
        manifest=manifest,
        own_generator=own_generator,
        report_path=report,
    )


if __name__ == "__main__":
    run(app)
