"""How well a trained AffinityNet separates pixels of one class from pixels of two, on ground truth.

The random walk can only sharpen a CAM where the affinities W_ij = exp(-mean_c |f_i - f_j|) are
high inside an object and low across its boundary. This measures that directly, without a walk:
over every pair of stride-8 cells within the network's radius whose ground-truth labels are both
known, the mean W of same-class and of different-class pairs, and the AUC = the chance that a
random same-class pair has the higher affinity (0.5: no separation, 1: perfect). Affinities are
binned (BINS bins on [0, 1]), so the AUC costs no memory per pair; ties within a bin count half.

    python -m pipeline affinity-check [--results results] [--model results/affinity/model.pt]
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from . import manifest as mf
from .data import to_tensor
from .evaluate import load_ground_truth
from .grid_pairs import pair_offsets
from .imageio import ImageReadError, read_image
from .logs import progress
from .train_affinity import cell_labels, pair_affinities, pair_labels

BINS = 1000
log = logging.getLogger(__name__)


def pair_histograms(features: torch.Tensor, cells: torch.Tensor, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(same, different): histograms over BINS bins of W for the cell pairs within `radius` of
    features [C, h, w] whose labels cells [h', w'] (IGNORE = unknown) are both known; each pair
    is counted once. The pairs, their affinities and labels are AffinityNet's training ones
    (pipeline/train_affinity.py). The grids are cut to their common size."""
    h, w = min(features.shape[1], cells.shape[0]), min(features.shape[2], cells.shape[1])
    offsets = pair_offsets(radius)
    aff = pair_affinities(features[None, :, :h, :w], offsets)[0]
    labels = pair_labels(cells[None, :h, :w], offsets)
    bins = (aff.clamp(0, 1) * (BINS - 1)).round().long()

    def histogram(mask):
        return np.bincount(bins[mask[0]].cpu().numpy(), minlength=BINS).astype(np.int64)

    return histogram(labels["bg"] | labels["fg"]), histogram(labels["neg"])


def auc(same: np.ndarray, diff: np.ndarray) -> float:
    """P(a same-class pair's W > a different-class pair's W) from the two histograms, ties half."""
    n_same, n_diff = same.sum(), diff.sum()
    if not n_same or not n_diff:
        return float("nan")
    below = np.concatenate([[0], np.cumsum(diff)[:-1]])  # different-class pairs in lower bins
    return float((same * (below + 0.5 * diff)).sum() / (float(n_same) * float(n_diff)))  # no int64 overflow


def summary(same: np.ndarray, diff: np.ndarray) -> dict:
    centres = np.arange(BINS) / (BINS - 1)

    def mean(h):
        return float((h * centres).sum() / h.sum()) if h.sum() else float("nan")

    return {"auc": auc(same, diff), "same_pairs": int(same.sum()), "different_pairs": int(diff.sum()),
            "mean_w_same": mean(same), "mean_w_different": mean(diff)}


@torch.no_grad()
def check(model_path, records: list[mf.Record], max_images: int | None = None, device: str = "auto") -> dict:
    """summary() over the records' images and ground-truth masks, the network on `device` (auto:
    a GPU where there is one, as the walk); records without a usable mask are skipped, logged and
    counted, and a split with none at all is a ValueError."""
    from .devices import pick_device
    from .nets import load_affinity_net

    dev = pick_device(device)
    model, saved = load_affinity_net(model_path, dev)
    n_classes = len(saved["classes"]) + 1
    same, diff = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    used = skipped = 0
    for r in progress(records[:max_images], desc="affinity-check", unit="img"):
        try:
            gt = load_ground_truth(r, n_classes)
            rgb = read_image(r.image)
        except ImageReadError as e:
            log.warning("skipped: %s", e)
            skipped += 1
            continue
        if gt.shape != rgb.shape[:2]:
            log.warning("skipped: %s: mask %s, image %s", r.mask, gt.shape, rgb.shape[:2])
            skipped += 1
            continue
        features = model(to_tensor(rgb).to(dev)[None])[0]
        cells = cell_labels(torch.from_numpy(gt.astype(np.int64))).to(dev)
        s, d = pair_histograms(features, cells, saved["radius"])
        same += s
        diff += d
        used += 1
    if not used:
        raise ValueError(f"none of the {len(records[:max_images])} images has a usable ground-truth mask "
                         f"({skipped} skipped): affinity-check needs a split with masks")
    return {**summary(same, diff), "images": used, "skipped": skipped, "radius": saved["radius"]}
