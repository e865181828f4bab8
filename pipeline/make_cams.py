"""Stage make_cams: class activation maps of the present classes, per shard.

For each scale the image (and its mirror) goes through the classifier; the ReLU CAMs of the
image's classes are brought back to full resolution and summed over scales and flips, then
each class map is divided by its own maximum (IRN). Stored as float16 cams [K, H, W] with
keys [K], the class values (1..C) of the maps, so that a label map is keys[argmax].
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from . import manifest as mf
from .artifacts import ArtifactWriter
from .data import scaled_views, to_tensor, unflip
from .devices import pick_device
from .logs import progress
from .nets import Classifier, load_classifier
from .problems import ProblemReport, readable_images

log = logging.getLogger(__name__)


@torch.no_grad()
def multiscale_cams(model: Classifier, rgb: np.ndarray, class_index: list[int], scales, flip: bool,
                    device="cpu") -> np.ndarray:
    """float32 [K, H, W] CAMs of the 0-based classes `class_index`, each scaled to max 1."""
    h, w = rgb.shape[:2]
    if not class_index:
        return np.zeros((0, h, w), np.float32)
    x = to_tensor(rgb).to(device)
    keys = torch.as_tensor(class_index, device=device)
    total = torch.zeros((len(class_index), h, w), device=device)
    for xs in scaled_views(x, scales, flip):
        cams = unflip(model.cams(xs, keys)).sum(0, keepdim=True)
        total += F.interpolate(cams, size=(h, w), mode="bilinear", align_corners=False)[0]
    peak = total.flatten(1).max(dim=1).values.clamp_min(1e-5)
    return (total / peak[:, None, None]).cpu().numpy()


def run(*, manifest_path, model_path, cfg: dict, device: str, code_hash: str,
        split: str, shard: str, out_path, problems_path) -> None:
    records = mf.read_tsv(manifest_path)
    dev = pick_device(device)
    model, saved = load_classifier(model_path, dev, forward_only=True)
    problems = ProblemReport(problems_path)
    log.info("%s: CAMs of %d images at scales %s%s on %s", shard, len(records), cfg["scales"],
             " with flip" if cfg["flip"] else "", dev)
    with ArtifactWriter(out_path, stage="cam", split=split, shard=shard, classes=saved["classes"],
                        params=cfg, code_hash=code_hash) as out:
        for r, rgb in readable_images(progress(records, desc=f"make_cams {split}/{shard}", unit="img"), problems):
            cams = multiscale_cams(model, rgb, [v - 1 for v in r.labels], cfg["scales"], cfg["flip"], dev)
            out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask, "height": rgb.shape[0],
                                 "width": rgb.shape[1]},
                    cams=cams.astype(np.float16), keys=np.asarray(r.labels, dtype=np.uint8))
    problems.write()
