"""Segmenters on pseudo masks (DeepLab LargeFOV / ASPP): the loss and multi-scale inference.

The loss is the pixel cross-entropy with 255 ignored; `balanced` averages it per class first
(each class present in the batch weighs the same, whatever its pixel count), which keeps a
segmenter trained on pseudo masks from collapsing onto the dominant background.

Inference runs the image at every scale and, with `flip`, mirrored; the softmax
probabilities, brought back to the image size, are averaged.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import normalize, resize, to_tensor
from .imageio import IGNORE


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Cross-entropy of logits [N, C, H, W] against target [N, H, W] (255 ignored)."""
    target = target.long()
    if not balanced:
        valid = target != IGNORE
        if not valid.any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=IGNORE)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    classes = [c for c in target.unique().tolist() if c != IGNORE]
    if not classes:
        return logits.sum() * 0.0
    return torch.stack([per_pixel[target == c].mean() for c in classes]).mean()


@torch.no_grad()
def multiscale_probs(model, rgb: np.ndarray, scales, flip: bool, device="cpu") -> torch.Tensor:
    """Class probabilities [C, H, W] averaged over scales (and mirrored images)."""
    h, w = rgb.shape[:2]
    x = normalize(to_tensor(rgb).to(device))
    total, count = None, 0
    for s in scales:
        xs = resize(x, (max(8, round(h * s)), max(8, round(w * s))))[None]
        if flip:
            xs = torch.cat([xs, xs.flip(-1)])
        probs = F.interpolate(model.logits(xs), size=(h, w), mode="bilinear", align_corners=False).softmax(1)
        if flip:
            probs = torch.cat([probs[:1], probs[1:].flip(-1)])
        total = probs.sum(0) if total is None else total + probs.sum(0)
        count += probs.shape[0]
    return total / count
