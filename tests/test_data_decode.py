"""Safe decoding of single files: quality estimate, conversions, preprocessing, bombs."""

from __future__ import annotations

import hashlib
import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.data import reasons
from pipeline.data.decode import (
    DecodeSettings,
    decode_bytes,
    decode_file,
    estimate_jpeg_quality,
    resize_center_crop,
)
from tests.badcorpus import exif_rotated_jpeg, png_bytes, rgb_image

SETTINGS = DecodeSettings(resolution=16, max_pixels=1_000_000, min_size=16)


def _jpeg(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("quality", [50, 75, 95, 10, 30, 85, 100])
def test_jpeg_quality_estimate_matches_pil_saves(quality: int) -> None:
    with Image.open(io.BytesIO(_jpeg(rgb_image(32, 32, 0), quality=quality))) as im:
        estimate = estimate_jpeg_quality(im.quantization)
    assert abs(estimate - quality) <= 2
    res = decode_bytes(_jpeg(rgb_image(32, 32, 0), quality=quality), SETTINGS)
    assert res.jpeg_quality == estimate and res.format == "JPEG"


def test_jpeg_quality_absent_for_other_formats() -> None:
    assert estimate_jpeg_quality(None) == -1
    assert decode_bytes(_png(rgb_image(20, 20, 1)), SETTINGS).jpeg_quality == -1


def test_resize_short_side_then_centre_crop_matches_pil_recipe() -> None:
    im = rgb_image(60, 40, 2)  # landscape: short side 40 -> 16, long side 60 -> 24, crop columns 4..20
    res = decode_bytes(_png(im), SETTINGS)
    expected = np.asarray(im.resize((24, 16), Image.Resampling.BICUBIC))[:, 4:20]
    assert res.status == "accepted" and res.reason == ""
    assert res.pixels is not None and res.pixels.shape == (3, 16, 16) and res.pixels.dtype == np.uint8
    np.testing.assert_array_equal(res.pixels.transpose(1, 2, 0), expected)
    portrait = resize_center_crop(rgb_image(30, 45, 3), 16)  # 30x45 -> 16x24, crop rows 4..20
    ref = np.asarray(rgb_image(30, 45, 3).resize((16, 24), Image.Resampling.BICUBIC))[4:20]
    np.testing.assert_array_equal(np.asarray(portrait), ref)


def test_image_already_at_resolution_is_unchanged() -> None:
    im = rgb_image(16, 16, 4)
    res = decode_bytes(_png(im), SETTINGS)
    assert res.pixels is not None
    np.testing.assert_array_equal(res.pixels.transpose(1, 2, 0), np.asarray(im))


def test_exif_rotation_really_rotates_pixels() -> None:
    res = decode_bytes(exif_rotated_jpeg(6), SETTINGS)
    assert res.status == "converted" and res.reason == "EXIF orientation 6 applied"
    assert (res.width, res.height) == (32, 16)  # original, as stored in the file
    px = res.pixels.astype(int)  # type: ignore[union-attr]
    # Stored: left half red, right half blue. Rotated 90 deg clockwise: red on top, blue at the bottom.
    top, bottom = px[:, :6].mean(axis=(1, 2)), px[:, 10:].mean(axis=(1, 2))
    assert top[0] > 200 and top[2] < 50, top
    assert bottom[2] > 200 and bottom[0] < 50, bottom


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    arr = np.full((20, 20), 32896, dtype=np.uint16)  # 32896 / 257 = 128 exactly
    res = decode_bytes(_png(Image.fromarray(arr)), SETTINGS)
    assert res.status == "converted" and "16-bit -> 8-bit" in res.reason and res.mode.startswith("I")
    assert res.pixels is not None and np.all(res.pixels == 128)


def test_sixteen_bit_rgb_png_detected_from_ihdr() -> None:
    pixels = np.full((18, 18, 3), 0xFF00, dtype=">u2").tobytes()
    res = decode_bytes(png_bytes(18, 18, bit_depth=16, color_type=2, pixels=pixels), SETTINGS)
    assert res.status == "converted" and res.reason == "16-bit -> 8-bit"
    assert res.pixels is not None and np.all(res.pixels == 255)


def test_alpha_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # fully transparent black -> white
    res = decode_bytes(_png(rgba), SETTINGS)
    assert res.status == "converted" and res.reason == "alpha (RGBA) composited on white"
    assert res.pixels is not None and np.all(res.pixels == 255)
    la = Image.new("LA", (20, 20), (0, 128))  # half-transparent black on white -> ~127 grey
    res = decode_bytes(_png(la), SETTINGS)
    assert "alpha (LA) composited on white" in res.reason and "grayscale (LA) -> RGB" in res.reason
    assert res.pixels is not None and np.all(np.abs(res.pixels.astype(int) - 127) <= 1)


def test_cmyk_and_palette_become_rgb() -> None:
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # pure red in CMYK
    res = decode_bytes(_jpeg(cmyk, quality=95), SETTINGS)
    assert res.status == "converted" and res.reason == "CMYK -> RGB" and res.mode == "CMYK"
    mean = res.pixels.reshape(3, -1).mean(axis=1)  # type: ignore[union-attr]
    assert mean[0] > 200 and mean[1] < 60 and mean[2] < 60
    pal = Image.new("RGB", (20, 20), (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    res = decode_bytes(_png(pal), SETTINGS)
    assert res.reason == "palette (P) -> RGB"
    assert res.pixels is not None and np.array_equal(res.pixels[:, 0, 0], [0, 0, 255])


def test_header_only_bomb_rejected_without_decoding() -> None:
    data = png_bytes(30000, 30000, bit_depth=8, color_type=2, pixels=None)
    t0 = time.perf_counter()
    res = decode_bytes(data, DecodeSettings(resolution=16))  # default limit 40M pixels
    assert time.perf_counter() - t0 < 1.0  # decoding 900M pixels would take far longer (and 2.7 GB)
    assert res.status == "rejected" and res.reason.startswith(reasons.TOO_LARGE)
    assert (res.width, res.height) == (30000, 30000) and "900000000" in res.reason
    assert res.pixels is None


def test_pil_bomb_limit_is_restored() -> None:
    before = Image.MAX_IMAGE_PIXELS
    decode_bytes(png_bytes(30000, 30000, bit_depth=8, color_type=2, pixels=None), SETTINGS)
    decode_bytes(_png(rgb_image(20, 20, 5)), SETTINGS)
    assert before == Image.MAX_IMAGE_PIXELS


def test_recode_jpeg_changes_pixels_and_png_is_lossless() -> None:
    data = _png(rgb_image(16, 16, 6))
    plain = decode_bytes(data, SETTINGS).pixels
    png = decode_bytes(data, DecodeSettings(resolution=16, recode="png")).pixels
    jpeg = decode_bytes(data, DecodeSettings(resolution=16, recode="jpeg:50")).pixels
    assert plain is not None and png is not None and jpeg is not None
    np.testing.assert_array_equal(png, plain)
    buf = io.BytesIO()
    Image.fromarray(plain.transpose(1, 2, 0)).save(buf, format="JPEG", quality=50, subsampling="4:2:0")
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).transpose(2, 0, 1)
    assert not np.array_equal(jpeg, plain)
    np.testing.assert_array_equal(jpeg, expected)


def test_decode_file_hashes_and_rejects_non_regular(tmp_path) -> None:
    p = tmp_path / "a.png"
    p.write_bytes(_png(rgb_image(20, 20, 7)))
    res = decode_file(p, SETTINGS)
    assert res.image_id == hashlib.sha256(p.read_bytes()).hexdigest() and res.bytes == p.stat().st_size
    only_hash = decode_file(p, None)
    assert only_hash.image_id == res.image_id and only_hash.pixels is None and only_hash.width == -1
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    res = decode_file(fifo, SETTINGS)  # reading a FIFO would block forever
    assert res.status == "rejected" and res.reason.startswith(reasons.NOT_REGULAR)
