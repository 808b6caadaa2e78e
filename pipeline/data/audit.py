"""Format-bias audit: can the families be told apart by their file format alone?

Published detectors learned JPEG-vs-PNG (or JPEG quality) instead of generator traces: re-saving the fakes
as JPEG dropped one to chance. The audit describes, per family, the formats, JPEG qualities and sizes of the
images that reach the cache (status accepted or converted) and gives a ``format_separable`` verdict.

Verdict: each image gets a codec signature, its format (MPO counted as JPEG) and, for JPEG, its estimated
quality (``JPEG q75``). Two families are separable by format when their signature sets are disjoint: a lookup
on the signature alone classifies every image of the pair. ``by`` says whether the formats themselves are
disjoint (``format``) or only the JPEG qualities (``jpeg_quality``). Disjoint colour modes (all reals
grayscale ``L``, all fakes ``RGB``) are flagged the same way (``by: mode``): after conversion to RGB a grey
image has R = G = B exactly, a cue as trivial as the codec. Sizes are reported the same way
(``size_separable``) for information: resizing to ``data.resolution`` hides most of a size difference.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from typing import Any

from pipeline.data import reasons
from pipeline.data.manifest import FAMILIES, SPLITS, STATUSES

__all__ = ["audit_rows", "codec_signature", "format_separability", "render_markdown"]


def codec_signature(fmt: str, quality: int) -> str:
    """``"PNG"``, ``"JPEG q75"`` or ``"JPEG q?"`` (quality unknown)."""
    if fmt in ("JPEG", "MPO"):
        return f"JPEG q{quality}" if quality >= 0 else "JPEG q?"
    return fmt


def _fmt(fmt: str) -> str:
    return "JPEG" if fmt == "MPO" else fmt


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "median": float(statistics.median(values)),
        "mean": round(statistics.fmean(values), 2),
        "max": max(values),
    }


def _describe(members: list[str]) -> str:
    counts = Counter(members)
    return ", ".join(f"{k} ({100 * v / len(members):.0f}%)" for k, v in counts.most_common(3)) + (
        ", ..." if len(counts) > 3 else ""
    )


_BY_TEXT = {"format": "format", "jpeg_quality": "JPEG quality", "mode": "colour mode"}


def format_separability(kept: list[dict[str, Any]], *, recode: str = "none") -> dict[str, Any]:
    """The ``format_separable`` verdict over the cached rows (see module docstring)."""
    sigs: dict[str, list[str]] = defaultdict(list)
    fmts: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, set[tuple[int, int]]] = defaultdict(set)
    modes: dict[str, set[str]] = defaultdict(set)
    for r in kept:
        modes[r["family"]].add(r["mode"])
        sigs[r["family"]].append(codec_signature(r["format"], r["jpeg_quality"]))
        fmts[r["family"]].add(_fmt(r["format"]))
        sizes[r["family"]].add((r["width"], r["height"]))
    present = [f for f in FAMILIES if sigs.get(f)]
    pairs: list[dict[str, Any]] = []
    for a, b in itertools.combinations(present, 2):
        shared = sorted(set(sigs[a]) & set(sigs[b]))
        n_pair = len(sigs[a]) + len(sigs[b])
        overlap = sum(1 for s in sigs[a] + sigs[b] if s in shared) / n_pair
        by = None
        if not fmts[a] & fmts[b]:
            by = "format"
        elif not shared:
            by = "jpeg_quality"
        elif not modes[a] & modes[b]:
            by = "mode"
        pairs.append(
            {
                "families": [a, b],
                "separable": by is not None,
                "by": by,
                "shared_signatures": shared,
                "overlap": round(overlap, 4),
                "size_separable": not sizes[a] & sizes[b],
                "a": _describe(sigs[a]) if by != "mode" else ", ".join(sorted(modes[a])),
                "b": _describe(sigs[b]) if by != "mode" else ", ".join(sorted(modes[b])),
            }
        )
    flagged = [p for p in pairs if p["separable"]]
    if len(present) < 2:
        reason = f"only one family present ({', '.join(present) or 'none'}): nothing to separate"
    elif flagged:
        reason = "; ".join(
            f"{p['families'][0]} [{p['a']}] vs {p['families'][1]} [{p['b']}] share no {_BY_TEXT[p['by']]}"
            for p in flagged
        )
    else:
        reason = "every pair of families shares a format/quality: " + "; ".join(
            f"{p['families'][0]}-{p['families'][1]} share {', '.join(p['shared_signatures'][:3])} "
            f"({100 * p['overlap']:.0f}% of their images)"
            for p in pairs
        )
    size_flag = [p for p in pairs if p["size_separable"]]
    return {
        "separable": bool(flagged),
        "reason": reason,
        "pairs": pairs,
        "recode": recode,
        "mitigated_by_recode": bool(flagged) and recode != "none",
        "size_separable": bool(size_flag),
        "size_reason": "; ".join(
            f"{p['families'][0]} and {p['families'][1]} have no source size in common" for p in size_flag
        ),
    }


def audit_rows(
    rows: list[dict[str, Any]],
    *,
    dataset: str,
    recode: str,
    duplicates: list[dict[str, Any]],
    hidden_skipped: int = 0,
    unlisted: int = 0,
) -> dict[str, Any]:
    """The audit (``audit.json``) of a dataset's manifest rows.

    Args:
        rows (`list[dict]`): manifest rows.
        dataset (`str`): dataset name.
        recode (`str`): ``prepare.recode`` in effect.
        duplicates (`list[dict]`): ``{"kept": path, "duplicates": [paths]}`` groups.
        hidden_skipped, unlisted (`int`): files skipped on purpose during discovery.
    """
    kept = [r for r in rows if r["status"] != "rejected"]
    families: dict[str, Any] = {}
    for fam in FAMILIES:
        mine = [r for r in kept if r["family"] == fam]
        if not mine:
            continue
        quality = Counter(str(r["jpeg_quality"]) for r in mine if _fmt(r["format"]) == "JPEG")
        families[fam] = {
            "n": len(mine),
            "generators": dict(sorted(Counter(r["generator"] for r in mine).items())),
            "formats": dict(Counter(_fmt(r["format"]) for r in mine).most_common()),
            "modes": dict(Counter(r["mode"] for r in mine).most_common()),
            "jpeg_quality": dict(sorted(quality.items(), key=lambda kv: int(kv[0]))),
            "sizes": {
                f"{w}x{h}": n for (w, h), n in Counter((r["width"], r["height"]) for r in mine).most_common(5)
            },
            "width": _stats([r["width"] for r in mine]),
            "height": _stats([r["height"] for r in mine]),
            "bytes": _stats([r["bytes"] for r in mine]),
        }
    split_counts = {
        s: dict(sorted(Counter(r["family"] for r in kept if r["split"] == s).items())) for s in SPLITS
    }
    rejected = Counter(reasons.category(r["reason"]) for r in rows if r["status"] == "rejected")
    return {
        "dataset": dataset,
        "n_files": len(rows),
        "status_counts": {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES},
        "split_counts": split_counts,
        "rejection_reasons": dict(rejected.most_common()),
        "conversions": dict(Counter(r["reason"] for r in rows if r["status"] == "converted").most_common()),
        "families": families,
        "duplicates": {
            "n_groups": len(duplicates),
            "n_rejected": sum(len(g["duplicates"]) for g in duplicates),
            "groups": duplicates[:100],
        },
        "hidden_skipped": hidden_skipped,
        "unlisted": unlisted,
        "format_separable": format_separability(kept, recode=recode),
    }


def render_markdown(audit: dict[str, Any]) -> str:
    """A human-readable ``audit.md`` of an `audit_rows` result."""
    verdict = audit["format_separable"]
    lines = [f"# Ingestion audit: `{audit['dataset']}`", ""]
    if verdict["separable"]:
        mitigation = (
            f" `prepare.recode={verdict['recode']}` puts every cached image through one codec."
            if verdict["mitigated_by_recode"]
            else " Set `prepare.recode` (e.g. `jpeg:75`) or fix the sources."
        )
        lines += [
            f"**WARNING: families are separable by file format alone.** {verdict['reason']}.{mitigation}",
            "",
        ]
    else:
        lines += [f"Format bias: not separable by format alone ({verdict['reason']}).", ""]
    if verdict["size_separable"]:
        lines += [f"Note: {verdict['size_reason']} (resizing hides most of it).", ""]
    sc = audit["status_counts"]
    lines += [
        f"{audit['n_files']} files: {sc['accepted']} accepted, {sc['converted']} converted, "
        f"{sc['rejected']} rejected; {audit['hidden_skipped']} hidden entries skipped"
        + (
            f"; {audit['unlisted']} file(s) under the root not in the list file."
            if audit["unlisted"]
            else "."
        ),
        "",
        "## Splits",
        "",
        "| split | " + " | ".join(FAMILIES) + " | total |",
        "|---|" + "---|" * (len(FAMILIES) + 1),
    ]
    for s, counts in audit["split_counts"].items():
        cells = [str(counts.get(f, 0)) for f in FAMILIES]
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    lines += ["", "## Families", "", "| family | n | formats | JPEG qualities | sizes | median bytes |"]
    lines.append("|---|---|---|---|---|---|")
    for fam, d in audit["families"].items():
        fmts = ", ".join(f"{k} {v}" for k, v in d["formats"].items())
        qs = ", ".join(f"q{k}: {v}" for k, v in d["jpeg_quality"].items()) or "-"
        sizes = ", ".join(f"{k}: {v}" for k, v in d["sizes"].items())
        lines.append(f"| {fam} | {d['n']} | {fmts} | {qs} | {sizes} | {d['bytes'].get('median', '-')} |")
    if audit["rejection_reasons"] or audit["conversions"]:
        lines += ["", "## Rejections and conversions", ""]
        lines += [f"- rejected, {k}: {v}" for k, v in audit["rejection_reasons"].items()]
        lines += [f"- converted, {k}: {v}" for k, v in audit["conversions"].items()]
    dup = audit["duplicates"]
    if dup["n_groups"]:
        lines += ["", "## Exact duplicates (first in path order kept)", ""]
        lines += [
            f"- `{g['kept']}` <- " + ", ".join(f"`{p}`" for p in g["duplicates"]) for g in dup["groups"][:20]
        ]
        if dup["n_groups"] > 20:
            lines.append(f"- ... {dup['n_groups'] - 20} more groups in audit.json")
    return "\n".join(lines) + "\n"
