"""The recipe key decides whether a saved training state is resumed: what it covers, what it ignores."""

from __future__ import annotations

import numpy as np

from pipeline.demo import statistics
from pipeline.demo.resume import recipe_key


def _key(config: dict[str, object], images: np.ndarray, **kw: object) -> str:
    return recipe_key(config, seed=0, images=images, code=[statistics], **kw)  # type: ignore[arg-type]


def test_recipe_key_ignores_length_and_the_named_keys_only() -> None:
    images = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    base = {"lr": 1e-3, "steps": 100, "sample_steps": 50}
    key = _key(base, images, ignore={"sample_steps"})
    assert _key({**base, "steps": 900}, images, ignore={"sample_steps"}) == key  # longer run resumes
    assert _key({**base, "sample_steps": 200}, images, ignore={"sample_steps"}) == key
    assert _key({**base, "sample_steps": 200}, images) != _key(base, images)  # not ignored: new recipe
    assert _key({**base, "lr": 2e-3}, images, ignore={"sample_steps"}) != key
    other = images.copy()
    other[0, 0, 0, 0] = 1
    assert _key(base, other, ignore={"sample_steps"}) != key  # other training images
    assert recipe_key(base, seed=1, images=images, code=[statistics], ignore={"sample_steps"}) != key
