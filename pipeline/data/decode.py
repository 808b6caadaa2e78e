"""Safe decoding of one untrusted image file into a preprocessed RGB uint8 array, or a reason why not.

Order of checks (the first failing one is the row's reason): unreadable / not a regular file, zero bytes,
not an image, unsupported format, too large (width x height from the header, before any pixel is decoded:
decompression bombs), too small, truncated or corrupt (full decode). Pillow's own bomb guard is kept on
(``Image.MAX_IMAGE_PIXELS`` = our limit while opening; its warning is an error here).

Conversions (row status ``converted``, each recorded in ``reason``, applied in this order): EXIF orientation
(``ImageOps.exif_transpose``), 16-bit -> 8-bit (scaled, not clipped), CMYK / YCbCr / LAB / HSV / 1-bit /
palette / grayscale -> RGB, alpha composited on white. Multi-frame files keep their first frame.

Preprocessing (deterministic): the short side is resized to ``resolution`` with Pillow's BICUBIC filter (which
antialiases when downscaling, like torchvision's ``Resize(antialias=True)``), the long side to
``round(long * resolution / short)``, then the centre is cropped (offset ``(long - resolution) // 2``).
Images already at ``resolution`` x ``resolution`` pass unchanged. ``recode`` then re-encodes the result
(``jpeg:Q`` with Pillow's libjpeg at quality Q, 4:2:0; ``png`` is lossless, so pixels stay the same) so every
cached image carries the traces of one codec at the same size whatever its source format.

JPEG quality is estimated from the luminance quantisation table: the libjpeg quality (1..100) whose scaled
standard table (Annex K) is closest in L1 distance; exact for libjpeg-made files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.data import reasons

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "ALLOWED_FORMATS",
    "DecodeResult",
    "DecodeSettings",
    "decode_bytes",
    "decode_file",
    "decode_task",
    "estimate_jpeg_quality",
    "recode_image",
    "resize_center_crop",
]

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF"})
"""Pillow format names accepted (MPO is the multi-picture JPEG of phone cameras)."""

# Pillow's plugins raise these on malformed data (besides UnidentifiedImageError, an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError)

# ITU-T T.81 Annex K, table K.1 (luminance), natural (row-major) order: the base of libjpeg's quality scaling.
_STD_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
).ravel()


def _libjpeg_tables() -> np.ndarray:
    """(100, 64) luminance tables libjpeg writes for quality 1..100 (``jpeg_quality_scaling``, baseline)."""
    q = np.arange(1, 101, dtype=np.int64)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((_STD_LUMINANCE[None, :] * scale[:, None] + 50) // 100, 1, 255)


_QUALITY_TABLES = _libjpeg_tables()


def estimate_jpeg_quality(qtables: Mapping[int, Sequence[int]] | None) -> int:
    """libjpeg quality (1..100) closest to the luminance table, or -1 when there is none.

    Args:
        qtables (`Mapping[int, Sequence[int]]`): Pillow's ``image.quantization`` (64 values, natural order).
    """
    if not qtables or 0 not in qtables:
        return -1
    table = np.asarray(list(qtables[0]), dtype=np.int64)
    if table.shape != (64,):
        return -1
    dist = np.abs(_QUALITY_TABLES - table[None, :]).sum(axis=1)
    return int(np.argmin(dist)) + 1


@dataclass(frozen=True, kw_only=True)
class DecodeSettings:
    """What a worker needs to decode and preprocess one file (picklable)."""

    resolution: int
    recode: str = "none"
    max_pixels: int = 40_000_000
    min_size: int = 16


@dataclass(kw_only=True)
class DecodeResult:
    """Manifest fields of one file plus its preprocessed pixels `(3, R, R)` uint8 (None when rejected)."""

    image_id: str = ""
    bytes: int = -1
    width: int = -1
    height: int = -1
    mode: str = ""
    format: str = ""
    jpeg_quality: int = -1
    status: str = "rejected"
    reason: str = ""
    pixels: np.ndarray | None = None


@contextlib.contextmanager
def _bomb_guard(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``max_pixels`` (None: off) with its warning as an error."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _header_size(data: bytes) -> tuple[int, int, str, str]:
    """Width, height, mode, format from the header only (bomb guard off, nothing decoded)."""
    with _bomb_guard(None), Image.open(io.BytesIO(data)) as im:
        return im.size[0], im.size[1], im.mode, im.format or ""


def _bit_depth(im: Image.Image, data: bytes) -> int:
    """Bits per sample of PNG (IHDR) and TIFF (tag 258) files; 8 otherwise."""
    if im.format == "PNG" and len(data) > 25 and data[12:16] == b"IHDR":
        return data[24]
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def _to_rgb(im: Image.Image, bit_depth: int, notes: list[str]) -> Image.Image:
    """Any Pillow mode -> RGB, appending what was done to ``notes``."""
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float64)
        if mode == "F":
            arr8 = np.clip(np.rint(arr), 0, 255)
            notes.append("32-bit float -> 8-bit (clipped to 0..255)")
        else:
            arr8 = np.rint(np.clip(arr, 0, 65535) * (255.0 / 65535.0))
            notes.append("16-bit -> 8-bit")
        im = Image.fromarray(arr8.astype(np.uint8), mode="L")
        mode = "L"
    elif bit_depth > 8:
        notes.append("16-bit -> 8-bit")
    if mode == "P":
        has_alpha = "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette (P) -> RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
        notes.append("palette (PA) -> RGB")
    elif mode in ("L", "LA", "La", "1"):
        im = im.convert("RGBA" if mode in ("LA", "La") else "RGB")
        notes.append("1-bit -> RGB" if mode == "1" else f"grayscale ({mode}) -> RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
        notes.append(f"{mode} -> RGB")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")
        notes.append(f"{mode} -> RGB")
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im).convert("RGB")
        notes.append(f"alpha ({mode}) composited on white")
    return im


def resize_center_crop(im: Image.Image, resolution: int) -> Image.Image:
    """Short side -> ``resolution`` (BICUBIC), then the centred ``resolution`` x ``resolution`` crop."""
    w, h = im.size
    if (w, h) != (resolution, resolution):
        short = min(w, h)
        nw = resolution if w == short else max(resolution, round(w * resolution / short))
        nh = resolution if h == short else max(resolution, round(h * resolution / short))
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - resolution) // 2, (nh - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
    return im


def recode_image(im: Image.Image, recode: str) -> Image.Image:
    """Round-trip an RGB image through ``png`` or ``jpeg:Q`` in memory; ``none`` returns it unchanged."""
    if recode == "none":
        return im
    buf = io.BytesIO()
    if recode == "png":
        im.save(buf, format="PNG")
    else:
        im.save(buf, format="JPEG", quality=int(recode.split(":", 1)[1]), subsampling="4:2:0")
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def decode_bytes(data: bytes, settings: DecodeSettings) -> DecodeResult:
    """Check, convert and preprocess one file's bytes (``image_id`` and ``bytes`` are left to the caller)."""
    res = DecodeResult()
    if not data:
        res.reason = reasons.ZERO_BYTE
        return res
    limit = settings.max_pixels
    try:
        with _bomb_guard(limit), Image.open(io.BytesIO(data)) as im:
            res.width, res.height = im.size
            res.mode, res.format = im.mode, im.format or ""
            return _decode_open(im, data, settings, res)
    except UnidentifiedImageError as exc:
        res.reason = reasons.with_detail(reasons.NOT_AN_IMAGE, str(exc).split(" from ")[0].split(" <")[0])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        res.width, res.height, res.mode, res.format = _header_size(data)
        res.reason = _too_large(res.width, res.height, limit)
    except _DECODE_ERRORS as exc:
        res.reason = reasons.with_detail(reasons.CORRUPT, f"{type(exc).__name__}: {exc}")
    res.pixels = None
    return res


def _too_large(w: int, h: int, limit: int) -> str:
    detail = f"{w} x {h} = {w * h} pixels over prepare.max_pixels={limit}"
    return reasons.with_detail(reasons.TOO_LARGE, detail)


def _decode_open(im: Image.Image, data: bytes, settings: DecodeSettings, res: DecodeResult) -> DecodeResult:
    """The part of `decode_bytes` that runs on an opened (not yet decoded) image."""
    if res.format not in ALLOWED_FORMATS:
        allowed = ", ".join(sorted(ALLOWED_FORMATS - {"MPO"}))
        res.reason = reasons.with_detail(reasons.UNSUPPORTED_FORMAT, f"{res.format} (allowed: {allowed})")
        return res
    if res.format in ("JPEG", "MPO"):
        res.jpeg_quality = estimate_jpeg_quality(getattr(im, "quantization", None))
    w, h = res.width, res.height
    if w * h > settings.max_pixels:
        res.reason = _too_large(w, h, settings.max_pixels)
        return res
    if min(w, h) < settings.min_size:
        res.reason = reasons.with_detail(
            reasons.TOO_SMALL, f"{w} x {h} under prepare.min_size={settings.min_size}"
        )
        return res
    notes: list[str] = []
    n_frames = getattr(im, "n_frames", 1)
    im.load()
    orientation = im.getexif().get(0x0112, 1)
    if orientation in range(2, 9):
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF orientation {orientation} applied")
    rgb = _to_rgb(im, _bit_depth(im, data) if res.format in ("PNG", "TIFF") else 8, notes)
    if n_frames > 1:
        notes.append(f"first of {n_frames} frames")
    out = recode_image(resize_center_crop(rgb, settings.resolution), settings.recode)
    res.pixels = np.ascontiguousarray(np.asarray(out, dtype=np.uint8).transpose(2, 0, 1))
    res.status = "converted" if notes else "accepted"
    res.reason = "; ".join(notes)
    return res


def decode_file(path: str | os.PathLike[str], settings: DecodeSettings | None) -> DecodeResult:
    """Read, hash and (when ``settings`` is given) decode one file; never raises for bad content.

    Args:
        path (`str | PathLike`): the file.
        settings (`DecodeSettings | None`): None only hashes (for files already rejected by their labels).
    """
    res = DecodeResult()
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            res.reason = reasons.with_detail(reasons.NOT_REGULAR, "device, pipe or socket")
            return res
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        res.reason = reasons.with_detail(
            reasons.UNREADABLE, f"file cannot be read ({type(exc).__name__}: {exc.strerror})"
        )
        return res
    res.bytes = len(data)
    res.image_id = hashlib.sha256(data).hexdigest()
    if not data:
        res.reason = reasons.ZERO_BYTE
        return res
    if settings is None:
        return res
    decoded = decode_bytes(data, settings)
    decoded.image_id, decoded.bytes = res.image_id, res.bytes
    return decoded


def decode_task(task: tuple[str, DecodeSettings | None]) -> DecodeResult:
    """`decode_file` on a ``(path, settings)`` tuple: the unit of work of the decoding pool."""
    return decode_file(task[0], task[1])
