"""One table and one figure for the demo's generators: trained enough for the data to mean anything?

``DEMO-SCIENCE.md`` showed that an undertrained DM makes fakes a trivial statistic separates, so every
detector table of the demo must be read next to this one: per generator, its training (steps, wall time,
parameters), its fakes' pixel statistics against held-out real faces after the same JPEG codec (the
`pipeline.demo.quality` gate, with its tolerance), the near-copy check and, for diffusion models, how much of
the sampler's output fell outside [-1, 1] before clamping. The figure puts real faces beside every
generator's JPEG'd fakes; a second one plots each generator's fake/real power-spectrum ratio
(`pipeline.demo.spectrum`): at what scale a too-smooth or too-grainy generator departs from the reals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.demo.quality import REPORT_STATISTICS
from pipeline.demo.spectrum import spectrum_ratio
from pipeline.demo.statistics import GREY_COLOURFULNESS
from pipeline.errors import InputDataError

__all__ = [
    "generator_row",
    "generator_table",
    "save_generator_figure",
    "save_spectrum_figure",
    "write_generator_report",
]

_STATS = REPORT_STATISTICS


# An overall colour error (RMS on [0, 1]) too small to see: the report's colour-error unit when the real faces
# have almost no colour spread (grey LFW: a baseline of ~0 would turn any error into millions of "x").
_VISIBLE_CAST = 0.01


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputDataError(
            f"{str(path)!r} not found: run the generator's train/sample stage first."
        ) from exc
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{str(path)!r} is not valid JSON: {exc}.") from exc


def _training(model_dir: Path) -> dict[str, Any]:
    """Steps, seconds and parameter counts from a DM ``train_report.json`` or a GAN ``report.json``."""
    if (model_dir / "train_report.json").is_file():  # diffusion model (pipeline.demo.dm_training)
        r = _read_json(model_dir / "train_report.json")
        cfg = r["config"]
        ae = cfg["ae_steps"] if cfg["kind"] == "ldm" else 0
        v_pred = cfg.get("prediction_type", "epsilon") == "v_prediction"
        # the x0 estimate's colour error at t = 900 over guessing the average colour (pixel models; reports
        # written before `x0_error_by_t` existed lack it)
        at_900 = r.get("x0_error_by_t", {}).get("900", {})
        baseline = max(at_900.get("colour_baseline_rms", 0.0), _VISIBLE_CAST)
        colour = at_900["colour_rms"] / baseline if "colour_rms" in at_900 else None
        return {
            "arch": f"{cfg['kind']}/{cfg['unet']}"
            + (f"+{cfg['autoencoder']}" if ae else "")
            + (" (v-pred)" if v_pred else ""),
            "colour_error_900": colour,
            "steps": int(cfg["steps"]),
            "ae_steps": int(ae),
            "params": int(r["unet_params"]) + int(r.get("autoencoder_params", 0)),
            "train_seconds": float(r["train_seconds"]) + float(r.get("ae_seconds", 0.0)),
            "s_per_step": float(r["seconds_per_step"]),
            "sampler": f"{cfg['sampler']} {cfg['sample_steps']}",
            "preclamp_outside": float(r["sample_preclamp"]["frac_outside_1"]),
        }
    r = _read_json(model_dir / "report.json")  # GAN (pipeline.demo.gan_training)
    kept = int(r.get("snapshot_step") or r["steps"])  # reports before `snapshot` existed kept the last
    return {
        "arch": str(r["arch"]),
        "steps": int(r["steps"]),
        "ae_steps": 0,
        "params": int(r["g_params"]) + int(r["d_params"]),
        "train_seconds": float(r["seconds"]),
        "s_per_step": float(r["s_per_step"]),
        "sampler": "one forward pass" + (f" (EMA of step {kept:,})" if kept != int(r["steps"]) else ""),
        "snapshot_step": kept,
        "preclamp_outside": None,
        "colour_error_900": None,
    }


def generator_row(model_dir: Path, fakes_dir: Path) -> dict[str, Any]:
    """Training facts of ``model_dir`` joined with the quality report of the fakes in ``fakes_dir``."""
    q = _read_json(fakes_dir / "quality.json")
    return {
        "generator": q["generator"],
        "family": q["family"],
        "role": q["role"],
        **_training(model_dir),
        # a quality.json written before a statistic existed lacks it: the table shows "n/a" there
        "fake": {k: float(q["fake"][k]) for k in _STATS if k in q["fake"]},
        "real": {k: float(q["real"][k]) for k in _STATS if k in q["fake"]},
        "relative_gap": {k: float(q["relative_gap"][k]) for k in _STATS if k in q["fake"]},
        "auc": {k: float(q["auc"][k]) for k in _STATS if k in q["fake"]},
        "gated": list(q.get("gated", _STATS)),
        "tolerance": float(q["tolerance"]),
        "stats_ok": bool(q["stats_ok"]),
        "copies": int(q["copies"]),
        "nn_fake_to_train": float(q["nn_fake_to_train"]),
        "nn_real_test_to_train": float(q["nn_real_test_to_train"]),
        "ok": bool(q["ok"]),
    }


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def generator_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per generator, statistics as fake / real with the relative gap."""
    head = (
        "| generator | family / role | model | params | steps | min | s/step | sampler | mean | std | "
        "hf energy | colourfulness | cast red-green | cast yellow-blue | hue spread | "
        "best one-statistic AUC | outside [-1,1] | x0 colour error t=900 | copies | verdict |\n"
        + "|---" * 20
        + "|\n"
    )
    lines = []
    for r in rows:
        gated = r.get("gated", _STATS)
        stats = [
            f"{r['fake'][k]:.4g} / {r['real'][k]:.4g} ({100 * r['relative_gap'][k]:.0f}%"
            + (")" if k in gated else ", not gated: grey reals)")
            if k in r["fake"]
            else "n/a"
            for k in _STATS
        ]
        steps = f"{r['ae_steps']:,} AE + {r['steps']:,}" if r["ae_steps"] else f"{r['steps']:,}"
        outside = "-" if r["preclamp_outside"] is None else f"{100 * r['preclamp_outside']:.1f}%"
        verdict = "ok" if r["ok"] else ("statistics off" if not r["stats_ok"] else "copies")
        worst = max(r["auc"], key=lambda k: r["auc"][k])
        colour = r.get("colour_error_900")
        colour_cell = "-" if colour is None else f"{colour:.1f}x"
        lines.append(
            f"| {r['generator']} | {r['family']} / {r['role']} | {r['arch']} | {r['params'] / 1e6:.2f}M | "
            f"{steps} | {_minutes(r['train_seconds'])} | {r['s_per_step']:.3f} | {r['sampler']} | "
            + " | ".join(stats)
            + f" | {r['auc'][worst]:.2f} ({worst}) | {outside} | {colour_cell} | {r['copies']} | {verdict} |"
        )
    tol = rows[0]["tolerance"] if rows else float("nan")
    note = (
        "\nStatistics are fake / real (relative gap) on [0, 1] pixels after the same JPEG codec, against "
        f"held-out real faces; a generator passes when every gated gap is within {100 * tol:.0f}% and none "
        "of its fakes is a near-copy of a training face. `best one-statistic AUC`: max(AUC, 1 - AUC) of the "
        "single statistic that best separates this generator's fakes from real faces (0.5 = none does; "
        "reported, not gated). `hue spread`: mean distance of each image's (red-green, yellow-blue) hue "
        "from the real faces' mean hue (casts in opposite directions average out of the cast columns, not "
        "out of this one). `outside [-1,1]`: share of pre-clamp sampler output outside the image range "
        "(diffusion models). `x0 colour error t=900`: RMS error of a pixel DM's x0 estimate's overall colour "
        "at t = 900, in multiples of guessing the average colour (at least 0.01; `x0_error_by_t`; "
        "above 1x the model paints random casts that the sampler keeps). With grey real faces the colour "
        "gaps are not gated; the fakes must then be grey "
        f"too (colourfulness below {GREY_COLOURFULNESS}).\n"
    )
    return head + "\n".join(lines) + "\n" + note


def _grid_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def save_generator_figure(panels: list[tuple[str, Path]], real_grid: np.ndarray | None, out: Path) -> Path:
    """Real faces and each generator's ``samples.png`` side by side, titled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = ([("real (test)", real_grid)] if real_grid is not None else []) + [
        (name, _grid_image(path)) for name, path in panels
    ]
    cols = min(4, len(items))
    nrows = -(-len(items) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 3.4 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img) in zip(axes.ravel(), items, strict=False):
        ax.imshow(img, interpolation="nearest")  # panels share the axes size, whatever their pixel size
        ax.set_title(name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def save_spectrum_figure(freq: np.ndarray, ratios: dict[str, np.ndarray], out: Path) -> Path:
    """Fake/real radial power ratio per generator against frequency (log scale; 1 = the reals' power)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, ratio in ratios.items():
        ax.plot(freq, ratio, marker="o", markersize=3, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=0.8)  # beyond: diagonal frequencies only
    ax.set_yscale("log")
    ax.set_xlabel("spatial frequency (cycles / pixel; 0.5 = Nyquist)")
    ax.set_ylabel("power of fakes / power of real test faces")
    ax.set_title("Radially averaged power spectrum, fake / real (grey, after JPEG)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_generator_report(
    model_dirs: list[Path], fakes_dirs: list[Path], faces_dir: Path | None, out_dir: Path
) -> dict[str, Any]:
    """Write ``generators.json`` (metrics), ``generators.md`` and ``generators.png`` into ``out_dir``; with
    ``faces_dir``, also ``generators_spectrum.png`` and each row's ``spectrum_ratio`` (fake/real power per
    frequency in ``spectrum_freq``).

    Returns:
        `dict`: the ``generators.json`` content (per-generator rows, ``all_ok``, ``failing``).
    """
    if len(model_dirs) != len(fakes_dirs):
        raise InputDataError(
            f"got {len(model_dirs)} model folders but {len(fakes_dirs)} fakes folders; pass one of each per "
            "generator, in the same order."
        )
    rows = [generator_row(m, f) for m, f in zip(model_dirs, fakes_dirs, strict=True)]
    out_dir.mkdir(parents=True, exist_ok=True)
    real_grid, freq = None, None
    if faces_dir is not None:
        from pipeline.demo.faces import load_faces
        from pipeline.plots import image_grid

        reals = load_faces(faces_dir, "test")
        real_grid = image_grid(reals[:64], 8, 1)
        for r, f in zip(rows, fakes_dirs, strict=True):
            freq, ratio = spectrum_ratio(load_faces(f, None), reals)
            r["spectrum_ratio"] = [round(float(v), 4) for v in ratio]
        ratios = {r["generator"]: np.array(r["spectrum_ratio"]) for r in rows}
        save_spectrum_figure(freq, ratios, out_dir / "generators_spectrum.png")
    summary = {
        "generators": {r["generator"]: r for r in rows},
        "all_ok": all(r["ok"] for r in rows),
        "failing": [r["generator"] for r in rows if not r["ok"]],
        **({"spectrum_freq": [float(v) for v in freq]} if freq is not None else {}),
    }
    (out_dir / "generators.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    (out_dir / "generators.md").write_text("# Demo generators\n\n" + generator_table(rows))
    panels = [
        (f"{r['generator']} ({r['family']})", f / "samples.png")
        for r, f in zip(rows, fakes_dirs, strict=True)
    ]
    save_generator_figure(panels, real_grid, out_dir / "generators.png")
    return summary
