"""Stage segment: a trained segmenter's predictions with multi-scale + flip inference.

Each image runs at every scale and, with `flip`, mirrored; the softmax probabilities brought
back to the image size are averaged. Stored per image: `mask` (argmax, full size), `scores`
(the averaged probabilities at full resolution, as DeepLab's CRF takes them, of background and
of the classes that win at least one pixel: a class that wins none has no support for the CRF
to grow from, and keeping only these keeps the shard small) and `keys` (their class values).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import manifest as mf
from .artifacts import ArtifactWriter
from .data import scaled_views, to_tensor, unflip
from .devices import pick_device
from .imageio import write_label_png
from .logs import progress
from .nets import load_segmenter
from .problems import ProblemReport, readable_images

log = logging.getLogger(__name__)


@torch.no_grad()
def multiscale_probs(model, rgb: np.ndarray, scales, flip: bool, device="cpu") -> torch.Tensor:
    """Class probabilities [C, H, W] averaged over scales (and mirrored images)."""
    h, w = rgb.shape[:2]
    x = to_tensor(rgb).to(device)
    total, count = None, 0
    for xs in scaled_views(x, scales, flip):
        probs = unflip(F.interpolate(model.logits(xs), size=(h, w), mode="bilinear", align_corners=False).softmax(1))
        total = probs.sum(0) if total is None else total + probs.sum(0)
        count += probs.shape[0]
    return total / count


def segment_image(model, rgb: np.ndarray, scales, flip: bool, device="cpu",
                  allowed=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores float16 [K, H, W], keys uint8 [K], mask uint8 [H, W]) of one image: the
    probabilities of background and of the classes the mask holds. `allowed` (class values,
    background 0 always among them) restricts the prediction to the image's classes, as MCOF's
    PixelNet predicts its training images (whose labels it knows)."""
    probs = multiscale_probs(model, rgb, scales, flip, device)
    if allowed is not None:
        keep = torch.zeros(len(probs), dtype=torch.bool, device=probs.device)
        keep[[0, *allowed]] = True
        probs = probs * keep[:, None, None]
    mask = probs.argmax(0)
    counts = torch.bincount(mask.flatten(), minlength=len(probs))  # unique() sorts: ~10x slower
    counts[0] = 1  # background is kept always
    keys = torch.nonzero(counts).flatten()
    return (probs[keys].cpu().numpy().astype(np.float16), keys.to(torch.uint8).cpu().numpy(),
            mask.to(torch.uint8).cpu().numpy())


def run(*, manifest_path, model_path, cfg: dict, device: str, code_hash: str, stage: str, split: str, shard: str,
        out_path, png_dir, problems_path) -> None:
    records = mf.read_tsv(manifest_path)
    dev = pick_device(device)
    model, saved = load_segmenter(model_path, dev, forward_only=True)
    problems = ProblemReport(problems_path)
    png_dir = Path(png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    log.info("%s: %s on %d images, scales %s%s, %s", shard, stage, len(records), cfg["scales"],
             " + flip" if cfg["flip"] else "", dev)
    with ArtifactWriter(out_path, stage=stage, split=split, shard=shard, classes=saved["classes"],
                        params={**cfg, "source": saved["source"], "head": model.arch["head"]},
                        code_hash=code_hash) as out:
        for r, rgb in readable_images(progress(records, desc=f"{stage} {split}/{shard}", unit="img"), problems):
            allowed = r.labels if cfg.get("restrict_to_labels") else None
            scores, keys, mask = segment_image(model, rgb, cfg["scales"], cfg["flip"], dev, allowed)
            out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask, "height": rgb.shape[0],
                                 "width": rgb.shape[1]}, scores=scores, keys=keys, mask=mask)
            write_label_png(png_dir / f"{r.image_id}.png", mask)
    problems.write()
