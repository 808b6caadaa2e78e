"""multirecon: synthetic-face detection by multi-reconstruction, as an offline cached DVC pipeline.

The library is organised by job: ``data`` (ingestion, manifests), ``cache`` (Zarr stores),
``models`` (generators, encoders, backbones), ``inversion`` (DDIM and GAN reconstruction),
``demo`` (the embedded mini-ASFD), ``detectors`` and ``metrics``. Stages in ``stages/`` are thin
wrappers that read ``params.yaml`` and call into here.
"""

from __future__ import annotations

__version__ = "0.1.0"
