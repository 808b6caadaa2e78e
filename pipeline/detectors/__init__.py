"""Detectors trained only from the Zarr caches: Multi-Reconstruction, its Table III ablations, DIRE, CNNSpot
and the trivial control.

- ``inputs``: compositions (which cached fields form the input, converted how; CNNSpot augmentation);
- ``data``: manifest labels joined with cached arrays (``load_detector_data``);
- ``train``: the shared ResNet recipe (``DetectorTrainConfig``, ``train_detector``, ``load_detector``);
- ``control``: logistic regression on per-image statistics;
- ``config``: ``detectors.<name>`` params entries; ``run``: the stage entry points;
- ``synthetic``: a tiny on-disk dataset for tests and smoke runs.
"""
