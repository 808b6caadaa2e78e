"""Stable rejection reasons of the manifest: each ``reason`` starts with one of these strings.

Filters and tests match on the prefix (``reason.startswith(TOO_LARGE)``); the detail after ``": "`` names the
file, value or params key involved and may change wording.
"""

from __future__ import annotations

__all__ = [
    "ALL",
    "CORRUPT",
    "DUPLICATE",
    "INVALID_SPLIT",
    "LISTED_MISSING",
    "NOT_AN_IMAGE",
    "NOT_IN_PROTOCOL",
    "NOT_LABELLED",
    "NOT_REGULAR",
    "NO_FAMILY",
    "TOO_LARGE",
    "TOO_SMALL",
    "UNKNOWN_FAMILY",
    "UNREADABLE",
    "UNSUPPORTED_FORMAT",
    "ZERO_BYTE",
    "category",
    "with_detail",
]

ZERO_BYTE = "zero-byte file"
NOT_AN_IMAGE = "not an image / unidentified"
UNSUPPORTED_FORMAT = "unsupported image format"
CORRUPT = "truncated or corrupt"
TOO_LARGE = "too large (decompression bomb)"
TOO_SMALL = "too small"
UNREADABLE = "unreadable"
NOT_REGULAR = "not a regular file"
DUPLICATE = "duplicate of"
NO_FAMILY = "generator missing from the family map"
NOT_IN_PROTOCOL = "generator not in the protocol"
NOT_LABELLED = "no label from the layout"
LISTED_MISSING = "listed file missing"
UNKNOWN_FAMILY = "unknown family"
INVALID_SPLIT = "invalid split"


ALL: tuple[str, ...] = (
    ZERO_BYTE,
    NOT_AN_IMAGE,
    UNSUPPORTED_FORMAT,
    CORRUPT,
    TOO_LARGE,
    TOO_SMALL,
    UNREADABLE,
    NOT_REGULAR,
    DUPLICATE,
    NO_FAMILY,
    NOT_IN_PROTOCOL,
    NOT_LABELLED,
    LISTED_MISSING,
    UNKNOWN_FAMILY,
    INVALID_SPLIT,
)


def with_detail(reason: str, detail: str) -> str:
    """``"<reason>: <detail>"`` (or just ``reason`` when there is no detail)."""
    return f"{reason}: {detail}" if detail else reason


def category(reason: str) -> str:
    """The stable prefix a rejection reason starts with (the reason itself if none matches)."""
    return next((r for r in ALL if reason.startswith(r)), reason)
