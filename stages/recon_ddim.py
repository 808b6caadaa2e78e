"""DVC stage ``recon_ddim@<dataset>``: DDIM inversion + reconstruction of a prepared dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.inversion.ddim import run_ddim_reconstruction
from pipeline.params import get, load_params
from stages._common import configure_logging, run

app = typer.Typer(
    add_completion=False, help="DDIM-reconstruct every image of a prepared dataset (resumable)."
)


@app.command()
def main(
    dataset: str = typer.Argument(..., help="Dataset name (a key of `datasets` in params.yaml)."),
    input: Path = typer.Option(..., "--input", help="Input cache, data/prepared/<dataset>/images.zarr."),
    model: Path = typer.Option(..., help="diffusers UNet folder (unet/ + scheduler/), e.g. data/models/adm."),
    out: Path = typer.Option(..., help="Output store, data/cache/<dataset>/ddim.zarr."),
    work_dir: Path = typer.Option(..., help="Partial work for resuming, data/_work/recon_ddim/<dataset>."),
    report: Path = typer.Option(..., help="JSON report: images/s, retries, MSE per family/generator."),
    manifest: Path | None = typer.Option(None, help="manifest.parquet, for MSE per family and generator."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameters file."),
) -> None:
    """Reads recon.steps/batch_size/precision/compile, recon.ddim.*, cache.*, base.device, data.resolution."""
    configure_logging()
    p = load_params(params_file)
    result = run_ddim_reconstruction(
        input_store=input,
        out=out,
        model_dir=model,
        work_dir=work_dir,
        steps=int(get(p, "recon.steps")),
        batch_size=int(get(p, "recon.batch_size")),
        precision=str(get(p, "recon.precision", "fp32")),
        compile=bool(get(p, "recon.compile", False)),
        device=str(get(p, "base.device")),
        resolution=int(get(p, "data.resolution")),
        chunk_images=int(get(p, "cache.chunk_images")),
        shard_images=int(get(p, "cache.shard_images")),
        manifest=manifest,
        stage=f"recon_ddim@{dataset}",
        clip_sample=bool(get(p, "recon.ddim.clip_sample", True)),
        clip_sample_range=float(get(p, "recon.ddim.clip_sample_range", 1.0)),
        eps_scale=get(p, "recon.ddim.eps_scale", "model"),
    )
    result["dataset"] = dataset
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    run(app)
