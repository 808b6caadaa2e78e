"""Builder of the bad-input corpus: every kind of file ingestion must account for, with its expected row.

The corpus is an ASFD-style tree (``<generator>/<file>``) with generators ``real`` (real), ``stylegan`` (gan),
``adm`` (dm) and ``mystery`` (deliberately missing from the family map). Ingest it with
``families=FAMILY_MAP``, ``max_pixels=MAX_PIXELS`` and ``min_size=MIN_SIZE``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data import reasons

__all__ = [
    "FAMILY_MAP",
    "MAX_PIXELS",
    "MIN_SIZE",
    "Expected",
    "build_bad_corpus",
    "exif_rotated_jpeg",
    "png_bytes",
    "rgb_image",
]

FAMILY_MAP = {"real": "real", "stylegan": "gan", "adm": "dm"}
MAX_PIXELS = 1_000_000
MIN_SIZE = 16


@dataclass(frozen=True)
class Expected:
    """Expected ``status`` and the text the ``reason`` must start with (or contain, for conversions)."""

    status: str
    reason: str = ""


def rgb_image(w: int, h: int, seed: int) -> Image.Image:
    """A smooth-ish random RGB image (random noise would make JPEG tests meaningless)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(width: int, height: int, *, bit_depth: int, color_type: int, pixels: bytes | None) -> bytes:
    """A PNG written by hand: IHDR (+ one IDAT of filter-0 rows when ``pixels`` is given) + IEND.

    With ``pixels=None`` only the header exists: the file claims ``width x height`` in a few dozen bytes,
    which is what a decompression bomb looks like to a header check.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr)
    if pixels is not None:
        row = len(pixels) // height
        raw = b"".join(b"\x00" + pixels[i * row : (i + 1) * row] for i in range(height))
        body += _chunk(b"IDAT", zlib.compress(raw))
    return b"\x89PNG\r\n\x1a\n" + body + _chunk(b"IEND", b"")


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 32x16 JPEG, left half red and right half blue, whose EXIF says to rotate it (6 = 90° clockwise)."""
    arr = np.zeros((16, 32, 3), dtype=np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(arr), "JPEG", quality=95, exif=exif.tobytes())


def build_bad_corpus(root: Path) -> dict[str, Expected]:
    """Write the corpus under ``root``; return ``relative path -> Expected`` for every file that gets a row.

    Hidden files (``.DS_Store``) are written too but are not expected in the manifest.
    """
    exp: dict[str, Expected] = {}

    def put(rel: str, data: bytes, expected: Expected) -> None:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        exp[rel] = expected

    ok = Expected("accepted")
    good = _encode(rgb_image(40, 30, 0), "JPEG", quality=90)
    put("real/good.jpg", good, ok)
    put("real/truncated.jpg", good[: len(good) // 2], Expected("rejected", reasons.CORRUPT))
    png = _encode(rgb_image(24, 24, 1), "PNG")
    idat = png.index(b"IDAT") + 8
    garbled = png[:idat] + bytes(b ^ 0x5A for b in png[idat : idat + 40]) + png[idat + 40 :]
    put("real/garbled.png", garbled, Expected("rejected", reasons.CORRUPT))
    put("real/text.png", b"this is not an image, just text\n" * 4, Expected("rejected", reasons.NOT_AN_IMAGE))
    put("real/empty.jpg", b"", Expected("rejected", reasons.ZERO_BYTE))
    put("real/png_named.jpg", _encode(rgb_image(20, 20, 2), "PNG"), ok)
    cmyk = rgb_image(24, 24, 3).convert("CMYK")
    put("real/cmyk.jpg", _encode(cmyk, "JPEG", quality=90), Expected("converted", "CMYK -> RGB"))
    gray16 = (np.linspace(0, 65535, 24 * 24).reshape(24, 24)).astype(np.uint16)
    put("real/gray16.png", _encode(Image.fromarray(gray16), "PNG"), Expected("converted", "16-bit -> 8-bit"))
    rgb16 = np.linspace(0, 65535, 20 * 20 * 3).astype(">u2").tobytes()
    put(
        "real/rgb16.png",
        png_bytes(20, 20, bit_depth=16, color_type=2, pixels=rgb16),
        Expected("converted", "16-bit -> 8-bit"),
    )
    put("real/rotated.jpg", exif_rotated_jpeg(6), Expected("converted", "EXIF orientation 6 applied"))
    put(
        "real/anim.gif",
        _encode(rgb_image(20, 20, 4), "GIF"),
        Expected("rejected", reasons.UNSUPPORTED_FORMAT),
    )
    os.symlink(root / "real" / "nowhere.jpg", root / "real" / "dangling.jpg")
    exp["real/dangling.jpg"] = Expected("rejected", reasons.UNREADABLE)

    put("stylegan/plain.png", _encode(rgb_image(24, 24, 15), "PNG"), ok)
    rgba = rgb_image(24, 24, 5).convert("RGBA")
    rgba.putalpha(128)
    put("stylegan/rgba.png", _encode(rgba, "PNG"), Expected("converted", "alpha (RGBA) composited on white"))
    put(
        "stylegan/palette.png",
        _encode(rgb_image(24, 24, 6).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        Expected("converted", "palette (P) -> RGB"),
    )
    put(
        "stylegan/gray.png",
        _encode(rgb_image(24, 24, 7).convert("L"), "PNG"),
        Expected("converted", "grayscale"),
    )
    put("stylegan/tiny.png", _encode(rgb_image(1, 1, 8), "PNG"), Expected("rejected", reasons.TOO_SMALL))
    put(
        "stylegan/bomb.png",
        png_bytes(30000, 30000, bit_depth=8, color_type=2, pixels=None),
        Expected("rejected", reasons.TOO_LARGE),
    )
    # Just over the limit (between 1x and 2x): Pillow only warns here; the warning must still reject it.
    big = _encode(Image.new("RGB", (1100, 1000), (10, 20, 30)), "PNG")
    put("stylegan/big.png", big, Expected("rejected", reasons.TOO_LARGE))
    dup = _encode(rgb_image(32, 32, 9), "JPEG", quality=75)
    put("adm/a_face.jpg", dup, ok)
    put("stylegan/z_copy.jpg", dup, Expected("rejected", f"{reasons.DUPLICATE} adm/a_face.jpg"))
    put("adm/image.webp", _encode(rgb_image(24, 24, 10), "WEBP", quality=90), ok)
    put("adm/image.bmp", _encode(rgb_image(24, 24, 11), "BMP"), ok)
    put("adm/image.tiff", _encode(rgb_image(24, 24, 12), "TIFF"), ok)
    put("adm/nested/deeper/face.png", _encode(rgb_image(24, 30, 13), "PNG"), ok)
    put("mystery/face.png", _encode(rgb_image(24, 24, 14), "PNG"), Expected("rejected", reasons.NO_FAMILY))
    put("README.txt", b"a file in the root", Expected("rejected", reasons.NOT_LABELLED))
    (root / "real" / ".DS_Store").write_bytes(b"\x00\x01")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    return exp
