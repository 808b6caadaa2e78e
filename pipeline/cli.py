"""The `multirecon` command: environment checks and project helpers around the DVC pipeline.

The pipeline itself runs through DVC (`dvc repro`, `dvc exp run -S recon.steps=20`); this command
tells you whether the machine is ready and switches parameter profiles.
"""

from __future__ import annotations

import importlib
import platform
import shutil
import subprocess
from pathlib import Path

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="multirecon: synthetic-face detection by multi-reconstruction, as a cached DVC pipeline.\n\n"
    "Run the pipeline with `dvc repro`; use these commands to check the setup and switch profiles.",
)

PACKAGES = (
    "torch",
    "diffusers",
    "dvc",
    "zarr",
    "numcodecs",
    "pyarrow",
    "typer",
    "PIL",
    "numpy",
    "safetensors",
    "dvclive",
    "skimage",
    "sklearn",
    "matplotlib",
)


def _version(module: str) -> str | None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return str(getattr(mod, "__version__", "installed"))


@app.command()
def doctor(project: Path = typer.Option(Path("."), help="Project root (where dvc.yaml is).")) -> None:
    """Print package versions, the compute device, DVC remote status and anything missing."""
    missing: list[str] = []
    typer.echo(f"python      {platform.python_version()} ({platform.machine()})")
    for name in PACKAGES:
        v = _version(name)
        typer.echo(f"{name:<11} {v or 'MISSING'}")
        if v is None:
            missing.append(f"python package {name!r} (run `make setup`)")
    if _version("torch"):
        import torch

        from pipeline.device import resolve_device

        dev = resolve_device("auto")
        extra = ""
        if dev.type == "cuda":
            bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
            extra = f" ({torch.cuda.get_device_name(0)}, bf16={bf16})"
        threads = torch.get_num_threads()
        typer.echo(f"device      {dev}{extra}; torch threads {threads}; cuda build {torch.version.cuda}")
    if shutil.which("dvc") is None:
        missing.append("`dvc` executable on PATH")
    else:
        remotes = subprocess.run(["dvc", "remote", "list"], cwd=project, capture_output=True, text=True)
        default = subprocess.run(["dvc", "remote", "default"], cwd=project, capture_output=True, text=True)
        lines = remotes.stdout.strip().splitlines()
        typer.echo(f"dvc remotes {len(lines)} configured; default: {default.stdout.strip() or 'none'}")
        for line in lines:
            name, url = [*line.split(None, 1), ""][:2]
            reach = ""
            if "://" not in url:
                reach = " (reachable)" if (project / url).exists() or Path(url).exists() else " (NOT FOUND)"
            typer.echo(f"  {name}: {url}{reach}")
        if not lines:
            typer.echo("  (no remote: `dvc push` has nowhere to go; see README 'Sharing caches')")
    params = project / "params.yaml"
    if params.is_file():
        from pipeline.params import get, load_params

        p = load_params(params)
        src = Path(str(get(p, "demo.faces.source", "")))
        if src and not (project / src).exists() and not src.exists():
            if not str(src).startswith("data/"):
                missing.append(f"real-face folder demo.faces.source={str(src)!r}")
    else:
        missing.append(f"{params} (run from the project root)")
    shared = project.resolve().parent / "shared" / "data" / "utkface"
    typer.echo(
        f"shared data {'found at ' + str(shared) if shared.is_dir() else 'absent (tests needing it skip)'}"
    )
    if missing:
        typer.echo("missing:")
        for m in missing:
            typer.echo(f"  - {m}")
        raise typer.Exit(code=1)
    typer.echo("nothing missing")


@app.command()
def profile(
    name: str = typer.Argument(..., help="Profile name: a file profiles/<name>.yaml (quick, full)."),
    project: Path = typer.Option(Path("."), help="Project root."),
) -> None:
    """Merge profiles/NAME.yaml onto params.yaml (in place; see the change with `git diff`)."""
    from pipeline.errors import ConfigError
    from pipeline.profiles import apply_profile

    try:
        apply_profile(name, project / "params.yaml", project / "profiles")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(f"params.yaml now uses profile {name!r}; run `dvc repro`.")


@app.command("dm-sweep")
def dm_sweep(
    model: Path = typer.Argument(..., help="A trained demo DM folder, e.g. data/models/adm."),
    faces: Path = typer.Option(Path("data/demo/faces"), help="Demo faces folder (train + test reals)."),
    steps: list[int] = typer.Option([10, 50, 200], help="Sampling step counts to try (repeat the option)."),
    eta: list[float] = typer.Option([0.0], help="DDIM eta values to try (0 = deterministic; DDIM only)."),
    eps_scale: list[float] = typer.Option(
        [1.0], help="Epsilon-scaling lambdas to try (noise estimate / lambda at each step; 1 = off)."
    ),
    n: int = typer.Option(256, help="Fakes per setting (the same noise for every setting)."),
    seed: int = typer.Option(1, help="Seed of the initial (and ancestral) noise."),
    jpeg_quality: int = typer.Option(75, help="The demo codec's JPEG quality (demo.jpeg_quality)."),
    tolerance: float = typer.Option(0.15, help="The gate's tolerance (demo.sample.tolerance)."),
    device: str = typer.Option("auto", help="torch device: auto, cpu, cuda, mps."),
    recon_steps: list[int] = typer.Option(
        [], help="Also DDIM-reconstruct fakes and as many held-out reals at these step counts (pixel DMs)."
    ),
    out: Path = typer.Option(None, help="Write the rows as JSON here (optional)."),
) -> None:
    """Gate one DM's fakes per sampler setting: is the model or the sampler behind a failed statistic?

    With --recon-steps, each row also shows the fakes' mean DDIM reconstruction error after contrast
    normalisation (MSE / pixel variance) beside the reals': does the model reconstruct its own fakes best?
    """
    import json

    from pipeline.demo.faces import load_faces
    from pipeline.demo.sampler_sweep import sweep_sampler
    from pipeline.errors import MultireconError

    try:
        rows = sweep_sampler(
            model, load_faces(faces, "train"), load_faces(faces, "test"), steps=steps, etas=eta,
            eps_scales=eps_scale, n=n, recon_steps=recon_steps,
            seed=seed, device=device, jpeg_quality=jpeg_quality, tolerance=tolerance,
        )  # fmt: skip
    except MultireconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    keys = ("mean", "std", "hf_energy", "colourfulness")
    head = f"{'steps':>5} {'eta':>4} {'lambda':>6} "
    recon_head = "".join(f"  rec{r} norm fake/real" for r in recon_steps)
    typer.echo(head + " ".join(f"{k:>13}" for k in keys) + "  gate  best AUC   s" + recon_head)
    for r in rows:
        gaps = " ".join(f"{100 * r.signed_gap[k]:>+12.1f}%" for k in keys)
        verdict = "pass" if r.stats_ok else "FAIL"
        auc = f"{r.best_auc[0]} {r.best_auc[1]:.2f}"
        setting = f"{r.steps:>5} {r.eta:>4.1f} {r.eps_scale:>6.3f}"
        recon = "".join(
            f"  {r.recon[k]['norm']:>8.3f} / {r.recon_real[k]['norm']:.3f}" for k in map(str, recon_steps)
        )
        typer.echo(f"{setting} {gaps}  {verdict}  {auc}  {r.seconds:.0f}{recon}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps([r.to_dict() for r in rows], indent=1))


@app.command("lane-order")
def lane_order_command(
    params: Path = typer.Option(Path("params.yaml"), help="The params file whose demo section to read."),
    minutes: list[str] = typer.Option(
        [],
        "--minutes",
        help="NAME=MIN: a generator's measured lane time (training + sampling, `multirecon stage-times`). "
        "Given for every generator, the projected two-lane wall time of this order and of DMs first goes "
        "to stderr.",
    ),
) -> None:
    """Print the generators in the order `make demo-2lanes` gives them to its two lanes, one per line.

    `demo.lane_order` in params sets it (a planning choice: no stage reads it); without it the DMs go first.
    """
    from pipeline.demo.lanes import lane_order, makespan
    from pipeline.errors import ConfigError
    from pipeline.params import get, load_params

    try:
        demo = get(load_params(params), "demo")
        order = lane_order(demo)
        times = dict(_name_minutes(item, order) for item in minutes)
        if times and set(times) != set(order):
            raise ConfigError(f"--minutes needs every generator ({', '.join(order)})")
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo("\n".join(order))
    if times:
        ours, dms_first = (
            makespan(order, times),
            makespan(lane_order({"generators": demo["generators"]}), times),
        )
        typer.echo(f"two lanes: {ours:.0f} min in this order, {dms_first:.0f} DMs first", err=True)


def _name_minutes(item: str, names: list[str]) -> tuple[str, float]:
    """Parse one `--minutes NAME=MIN`; a wrong name or a non-number is a ConfigError naming the item."""
    from pipeline.errors import ConfigError

    name, _, value = item.partition("=")
    try:
        if name in names:
            return name, float(value)
    except ValueError:
        pass
    raise ConfigError(
        f"--minutes {item!r}: expected NAME=MIN, a number of minutes, NAME one of {', '.join(names)}"
    )


@app.command("stage-times")
def stage_times(
    logs: list[Path] = typer.Argument(
        ...,
        help="Saved `dvc repro` logs (stdout + stderr): repro.log, logs/demo-2lanes/*.log (a table each).",
    ),
) -> None:
    """Each stage's wall time from a `dvc repro` log, as a Markdown table (for the README's time table).

    Stages restored from DVC's run-cache or unchanged show 0; a `~` marks times taken from log timestamps
    (logs of stages older than the `stage finished` line, and a `killed` segment of a stage the log runs
    again, charged up to its last logged progress); `?` a last stage whose end the log does not show.
    """
    from pipeline.stage_times import format_markdown, parse_repro_log

    tables = []
    for log in logs:
        if not log.is_file():
            typer.echo(f"error: no log file {str(log)!r}", err=True)
            raise typer.Exit(code=2)
        with log.open(encoding="utf-8", errors="replace") as fh:
            rows = parse_repro_log(fh)
        if not rows:
            typer.echo(f"error: {str(log)!r} has no `Running stage` line: not a `dvc repro` log", err=True)
            raise typer.Exit(code=2)
        tables.append((log, format_markdown(rows)))
    for log, table in tables:
        typer.echo(f"{log}:\n\n{table}" if len(tables) > 1 else table, nl=len(tables) > 1)


if __name__ == "__main__":
    app()
