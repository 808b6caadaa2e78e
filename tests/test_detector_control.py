"""The trivial control: features mean what they say; fitting, selection and reloading."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.detectors.control import (
    FEATURE_NAMES,
    image_features,
    load_control,
    predict_control,
    train_control,
)
from pipeline.detectors.data import SplitData


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img.transpose(1, 2, 0)).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB")).transpose(2, 0, 1)


def test_features_by_hand() -> None:
    flat = np.full((1, 3, 16, 16), 51, dtype=np.uint8)  # 0.2 everywhere
    f = dict(zip(FEATURE_NAMES, image_features(flat)[0], strict=True))
    assert f["mean_r"] == pytest.approx(0.2) and f["std_g"] == pytest.approx(0.0)
    assert f["saturation_mean"] == pytest.approx(0.0)
    assert f["blockiness_h"] == pytest.approx(1.0) and f["log_laplacian_energy"] < -15
    red = np.zeros((1, 3, 16, 16), dtype=np.uint8)
    red[:, 0] = 255
    assert dict(zip(FEATURE_NAMES, image_features(red)[0], strict=True))["saturation_mean"] == pytest.approx(
        1.0
    )


def test_jpeg_raises_blockiness_and_blur_lowers_hf() -> None:
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(60, 200, (3, 8, 8)), np.ones((1, 4, 4))).astype(np.uint8)
    noisy = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    f = image_features(np.stack([noisy, _jpeg(noisy, 20)]))
    bh = FEATURE_NAMES.index("blockiness_h")
    assert f[1, bh] > f[0, bh] * 1.2
    lap = FEATURE_NAMES.index("log_laplacian_energy")
    assert image_features(smooth[None])[0, lap] < f[0, lap]


def _split(n: int, seed: int) -> SplitData:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    imgs = (rng.integers(0, 60, (n, 3, 8, 8)) + (labels * 70)[:, None, None, None]).astype(np.uint8)
    meta = {k: np.array(["x"] * n) for k in ("image_id", "dataset", "generator", "family", "split")}
    return SplitData(arrays={"image": imgs}, labels=labels.astype(np.int64), meta=meta)


def test_control_fits_selects_and_reloads(tmp_path) -> None:
    data = {"train": _split(30, 0), "val": _split(15, 1)}
    model = train_control(data, tmp_path)
    assert len(model.selection) == 5 and model.c in {s["C"] for s in model.selection}
    test = _split(15, 2)
    probs = predict_control(model, test.arrays["image"])
    assert np.allclose(probs.sum(1), 1) and (probs.argmax(1) == test.labels).mean() > 0.9
    again = predict_control(load_control(tmp_path), test.arrays["image"])
    assert np.allclose(probs, again)
    # the JSON softmax equals scikit-learn's own predict_proba for the chosen C
    from sklearn.linear_model import LogisticRegression

    z = (image_features(data["train"].arrays["image"]) - model.mean) / model.scale
    clf = LogisticRegression(C=model.c, class_weight="balanced", max_iter=2000, random_state=0)
    clf.fit(z, data["train"].labels)
    zt = (image_features(test.arrays["image"]) - model.mean) / model.scale
    assert np.allclose(clf.predict_proba(zt), probs, atol=1e-6)
