"""Real faces for the embedded demo: pick, resize, JPEG-encode and split them once.

Two sources: a folder of face photos (``../shared/data/utkface`` on development and CI machines, any
folder of face crops for users), or ``builtin``: the 100 LFW face crops that scikit-image's wheel ships
(25x25 grey), so a fresh clone runs without any download. Every chosen face is resized to the demo
resolution and saved as JPEG at the same quality the fakes will get, so no detector can win on codec.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.errors import ConfigError, InputDataError

__all__ = [
    "BUILTIN",
    "FacesConfig",
    "decode_jpeg",
    "encode_jpeg",
    "jpeg_roundtrip",
    "load_faces",
    "resize_center_crop",
    "select_faces",
    "write_faces",
]

log = logging.getLogger(__name__)

BUILTIN = "builtin"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True, kw_only=True)
class FacesConfig:
    """What real faces the demo uses.

    Args:
        source (`str`): a folder of face images, or `"builtin"` for scikit-image's LFW crops.
        resolution (`int`): side of the square output images.
        n_train, n_val, n_test (`int`): how many faces per split; generators train on `train` only.
        asian_only (`bool`): keep only faces labelled Asian (needs a `labels.csv` with a `race` column,
            as in UTKFace); mirrors the paper's ASFD.
        jpeg_quality (`int`): quality of the stored JPEGs (the same codec the fakes get).
        seed (`int`): selection seed.
    """

    source: str
    resolution: int
    n_train: int
    n_val: int
    n_test: int
    asian_only: bool = False
    jpeg_quality: int = 75
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("n_train", "n_val", "n_test"):
            if getattr(self, key) < 0:
                raise ConfigError(f"`demo.faces.{key}` must be >= 0. Got {getattr(self, key)} instead.")
        if self.n_train < 1 or self.n_test < 1:
            raise ConfigError("`demo.faces.n_train` and `demo.faces.n_test` must both be >= 1.")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"`demo.faces.jpeg_quality` must be in [1, 100]. Got {self.jpeg_quality}.")


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` (bicubic) and centre-crop a square: deterministic."""
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """uint8 ``(H, W, 3)`` -> JPEG bytes with fixed settings (4:2:0, no optimise: reproducible)."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False)
    return buf.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 ``(3, H, W)``."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def jpeg_roundtrip(images: np.ndarray, quality: int) -> np.ndarray:
    """uint8 ``(N, 3, H, W)`` through the demo's JPEG codec: what a fake looks like once it is stored."""
    return np.stack(
        [decode_jpeg(encode_jpeg(np.ascontiguousarray(im.transpose(1, 2, 0)), quality)) for im in images]
    )


def export_builtin_faces(out_dir: Path) -> int:
    """Write scikit-image's 100 LFW face crops (25x25 grey) as PNG files into ``out_dir``.

    This turns the package-shipped faces into an ordinary face folder, so the fresh-clone demo
    goes through exactly the code path a user's folder does.
    """
    from skimage import data as skdata

    out_dir.mkdir(parents=True, exist_ok=True)
    faces = skdata.lfw_subset()[:100]  # the first 100 of the 200 are faces, the rest are not
    for i, face in enumerate(faces):
        Image.fromarray(np.round(face * 255).astype(np.uint8), "L").save(out_dir / f"lfw_{i:03d}.png")
    return len(faces)


def _builtin_faces(resolution: int) -> tuple[list[str], list[np.ndarray]]:
    from skimage import data as skdata

    lfw = skdata.lfw_subset()[:100]  # the first 100 of the 200 are faces, the rest are not
    names, arrays = [], []
    for i, face in enumerate(lfw):
        grey = Image.fromarray(np.round(face * 255).astype(np.uint8), "L")
        arrays.append(np.asarray(resize_center_crop(grey, resolution)))
        names.append(f"lfw_{i:03d}")
    return names, arrays


def _folder_candidates(root: Path, asian_only: bool) -> list[Path]:
    labels = root / "labels.csv"
    if labels.is_file():
        with labels.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if asian_only and (not rows or "race" not in rows[0]):
            raise ConfigError(f"`demo.faces.asian_only` needs a `race` column in {str(labels)!r}.")
        keep = []
        for row in rows:
            if row.get("duplicate_of"):
                continue
            if asian_only and row["race"] != "asian":
                continue
            keep.append(root / row["path"])
        return sorted(keep)
    if asian_only:
        raise ConfigError(f"`demo.faces.asian_only` needs {str(labels)!r} (with a `race` column).")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def select_faces(config: FacesConfig) -> tuple[list[str], list[str]]:
    """Return ``(sources, splits)``: which source files (or builtin ids) go to which split.

    The choice is a seeded permutation of the sorted candidate list, so it is reproducible and
    independent of file-system order. Exact duplicates (same bytes) are dropped first.
    """
    need = config.n_train + config.n_val + config.n_test
    if config.source == BUILTIN:
        candidates = [f"lfw_{i:03d}" for i in range(100)]
    else:
        root = Path(config.source)
        if not root.is_dir():
            raise ConfigError(f"`demo.faces.source` folder {str(root)!r} does not exist.")
        paths = _folder_candidates(root, config.asian_only)
        seen: set[str] = set()
        candidates = []
        for p in paths:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                candidates.append(p.as_posix())
    if len(candidates) < need:
        raise InputDataError(
            f"`demo.faces`: {config.source!r} has {len(candidates)} usable faces"
            f"{' (Asian only)' if config.asian_only else ''}, but n_train + n_val + n_test ="
            f" {config.n_train} + {config.n_val} + {config.n_test} = {need}. Lower the counts or add faces."
        )
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(candidates))[:need]
    chosen = [candidates[i] for i in order]
    splits = ["train"] * config.n_train + ["val"] * config.n_val + ["test"] * config.n_test
    return chosen, splits


def write_faces(config: FacesConfig, out_dir: Path) -> dict[str, int]:
    """Select, resize and JPEG-encode the demo's real faces into ``out_dir/<split>/``.

    Writes ``labels.csv`` (path, split, source). Unreadable files among the candidates are an
    error naming the file: the source folder is meant to be clean face crops.
    """
    chosen, splits = select_faces(config)
    builtin = dict(zip(*_builtin_faces(config.resolution), strict=True)) if config.source == BUILTIN else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (src, split) in enumerate(zip(chosen, splits, strict=True)):
        if src in builtin:
            arr = builtin[src]
            rgb = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr
        else:
            try:
                with Image.open(src) as im:
                    rgb = np.asarray(resize_center_crop(ImageOps.exif_transpose(im), config.resolution))
            except OSError as exc:
                raise InputDataError(f"cannot read face image {src!r}: {exc}") from exc
        rel = f"{split}/{i:06d}.jpg"
        (out_dir / split).mkdir(exist_ok=True)
        (out_dir / rel).write_bytes(encode_jpeg(rgb, config.jpeg_quality))
        rows.append({"path": rel, "split": split, "source": src if src in builtin else Path(src).name})
    with (out_dir / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "split", "source"])
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: splits.count(s) for s in ("train", "val", "test")}
    log.info("demo faces written <out=%s> <counts=%s>", out_dir, counts)
    return counts


def load_faces(faces_dir: Path, split: str | None = "train") -> np.ndarray:
    """Decode the demo faces of one split (or all) into uint8 ``(N, 3, H, W)``, in labels order."""
    labels = faces_dir / "labels.csv"
    if not labels.is_file():
        raise InputDataError(f"{str(labels)!r} not found: run the `faces` stage first.")
    with labels.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if split is None or r["split"] == split]
    if not rows:
        raise InputDataError(f"no faces with split {split!r} in {str(labels)!r}.")
    arrays = []
    for r in rows:
        with Image.open(faces_dir / r["path"]) as im:
            arrays.append(np.asarray(im.convert("RGB")).transpose(2, 0, 1))
    return np.stack(arrays)
