"""The format-bias verdict on hand-made manifest rows."""

from __future__ import annotations

from typing import Any

from pipeline.data.audit import audit_rows, format_separability, render_markdown


def _row(family: str, fmt: str, q: int = -1, size: int = 64, status: str = "accepted") -> dict[str, Any]:
    return {
        "family": family,
        "generator": family,
        "format": fmt,
        "jpeg_quality": q,
        "width": size,
        "height": size,
        "bytes": 1000,
        "mode": "RGB",
        "status": status,
        "split": "train",
        "reason": "",
    }


def test_reals_jpeg_fakes_png_is_separable_by_format() -> None:
    rows = [_row("real", "JPEG", 75)] * 5 + [_row("gan", "PNG")] * 5 + [_row("dm", "PNG")] * 3
    v = format_separability(rows)
    assert v["separable"] is True and v["mitigated_by_recode"] is False
    by_pair = {tuple(p["families"]): p for p in v["pairs"]}
    assert by_pair[("real", "gan")]["by"] == "format" and by_pair[("real", "dm")]["by"] == "format"
    assert by_pair[("gan", "dm")]["separable"] is False
    assert "real [JPEG q75 (100%)] vs gan [PNG (100%)] share no format" in v["reason"]
    assert format_separability(rows, recode="jpeg:75")["mitigated_by_recode"] is True


def test_all_jpeg_q75_is_clean() -> None:
    rows = (
        [_row("real", "JPEG", 75, size=200)] * 4
        + [_row("gan", "JPEG", 75, 32)]
        + [_row("dm", "JPEG", 75, 32)]
    )
    v = format_separability(rows)
    assert v["separable"] is False and "share JPEG q75" in v["reason"]
    assert v["size_separable"] is True  # reported, not flagged: sizes differ (200 vs 32)


def test_disjoint_jpeg_qualities_are_separable() -> None:
    rows = [
        _row("real", "JPEG", 75),
        _row("real", "MPO", 80),
        _row("gan", "JPEG", 95),
        _row("gan", "JPEG", 90),
    ]
    v = format_separability(rows)
    assert v["separable"] is True and v["pairs"][0]["by"] == "jpeg_quality"
    rows.append(_row("gan", "JPEG", 80))  # one shared quality: a lookup no longer separates them
    v = format_separability(rows)
    assert v["separable"] is False and v["pairs"][0]["shared_signatures"] == ["JPEG q80"]
    assert v["pairs"][0]["overlap"] == 0.4


def test_disjoint_colour_modes_are_separable() -> None:
    rows = [{**_row("real", "JPEG", 75), "mode": "L"}] * 3 + [_row("gan", "JPEG", 75)] * 3
    v = format_separability(rows)
    assert v["separable"] is True and v["pairs"][0]["by"] == "mode"
    assert "real [L] vs gan [RGB] share no colour mode" in v["reason"]


def test_single_family_and_rejected_rows_are_ignored() -> None:
    rows = [_row("real", "JPEG", 75)] * 3 + [_row("gan", "PNG", status="rejected")]
    v = format_separability([r for r in rows if r["status"] != "rejected"])
    assert v["separable"] is False and "only one family present (real)" in v["reason"]
    audit = audit_rows(rows, dataset="x", recode="none", duplicates=[])
    assert audit["format_separable"]["separable"] is False
    assert set(audit["families"]) == {"real"}
    assert audit["families"]["real"]["jpeg_quality"] == {"75": 3}
    assert audit["status_counts"] == {"accepted": 3, "converted": 0, "rejected": 1}
    text = render_markdown(audit)
    assert "# Ingestion audit: `x`" in text and "not separable" in text
