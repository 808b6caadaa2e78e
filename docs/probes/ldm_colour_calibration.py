"""Probe behind README "Full profile, 2026-12-05, later": calibrate a trained LDM's decoder colour post hoc.

Shifts ``decoder.conv_out.bias`` by the mean per-channel reconstruction error over the training faces
(what ``DmTrainConfig.ae_colour_calibration`` does after the autoencoder trains), samples both decoders from
the same noise and gates them against the held-out reals. Usage, from a checkout whose `ldm` is trained and
whose faces are prepared: ``python docs/probes/ldm_colour_calibration.py . 800``; writes
``ldm_colour_calibration.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from pipeline.demo.dm_sampling import sample_dm
from pipeline.demo.dm_training import _calibrate_decoder_colour
from pipeline.demo.faces import jpeg_roundtrip, load_faces
from pipeline.demo.quality import quality_report
from pipeline.imaging import to_model


def main(lane: Path, n: int) -> dict:
    model, faces = lane / "data/models/ldm", lane / "data/demo/faces"
    train, test = load_faces(faces, "train"), load_faces(faces, "test")
    vae = AutoencoderKL.from_pretrained(str(model / "vae")).eval()
    # the same computation training runs with `ae_colour_calibration: true`
    out: dict = {"offset_rgb": _calibrate_decoder_colour(vae, to_model(train), torch.device("cpu"))}
    with tempfile.TemporaryDirectory() as tmp:
        calibrated = Path(tmp) / "ldm"
        shutil.copytree(model, calibrated)
        vae.save_pretrained(str(calibrated / "vae"))
        for name, folder in (("as trained", model), ("calibrated", calibrated)):
            fakes = sample_dm(folder, n, seed=123, batch_size=200, device="cpu")
            report = quality_report(jpeg_roundtrip(fakes, 75), train, test).to_dict()
            out[name] = {"ok": report["ok"], "relative_gap": report["relative_gap"], "auc": report["auc"]}
            print(name, json.dumps(out[name]), flush=True)
    return out


if __name__ == "__main__":
    result = main(Path(sys.argv[1]), int(sys.argv[2]))
    Path("ldm_colour_calibration.json").write_text(json.dumps(result, indent=2))
