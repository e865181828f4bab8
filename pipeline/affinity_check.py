"""How well a trained AffinityNet separates pixels of one class from pixels of two, on ground truth.

The random walk can only sharpen a CAM where the affinities W_ij = exp(-mean_c |f_i - f_j|) are
high inside an object and low across its boundary. This measures that directly, without a walk:
over every pair of stride-8 cells within the network's radius whose ground-truth labels are both
known, the mean W of same-class and of different-class pairs, and the AUC = the chance that a
random same-class pair has the higher affinity (0.5: no separation, 1: perfect). Affinities are
binned (BINS bins on [0, 1]), so the AUC costs no memory per pair; ties within a bin count half.

With `--walk` it also walks the run's CAMs with the run's walk settings over the trained
affinities W^beta and over the same affinities put right where the ground truth knows both cells
(WALKS): pairs across two segments set to 0 (no leaks), pairs within one segment set to 1 (full
links), both (perfect). Each walk's best mIoU over the background score (irn / per_class, with
the mIoU at the run's own bg_threshold beside it; psa: its argmax) says which error of the
affinities costs the walk most, and how much any AffinityNet could add to these CAMs. `--logt`
walks each of several numbers of steps (2^logt) and `--beta` each of several powers of the
affinities in the same pass, the network run once per image: how long a walk these affinities
bear, and how sharply the walk should follow them.

    python -m pipeline affinity-check [--results results] [--model results/affinity/model.pt] \
        [--walk [--logt 3 5 7] [--beta 4 8 12]]
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from . import manifest as mf
from .data import to_tensor, upsample_scores
from .evaluate import ThresholdSweep, confusion_matrix, grid_index, load_ground_truth, mean_iou, threshold_grid
from .grid_pairs import neighbour_offsets, offset_slices, pair_offsets
from .imageio import IGNORE, ImageReadError, read_image
from .logs import progress
from .random_walk import neighbour_affinities, scores_by_walk, transition_from_affinities
from .train_affinity import cell_labels, pair_affinities, pair_labels

BINS = 1000
WALKS = {"as trained": "the AffinityNet's affinities", "no leaks": "pairs across two segments set to 0",
         "full links": "pairs within a segment set to 1", "perfect": "both"}
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


def ground_truth_pairs(cells: torch.Tensor, radius: int, grid) -> tuple[torch.Tensor, torch.Tensor]:
    """(same, different): bool [P, h, w] in the walk's layout (neighbour_affinities': offset p of
    neighbour_offsets(radius) from cell (y, x)), true where both cells' ground-truth labels are
    known and equal / differ. cells [h', w'] (IGNORE = unknown) is cut or padded to grid (h, w)."""
    h, w = grid
    known = torch.full((h, w), IGNORE, dtype=cells.dtype, device=cells.device)
    hh, ww = min(h, cells.shape[0]), min(w, cells.shape[1])
    known[:hh, :ww] = cells[:hh, :ww]
    offsets = neighbour_offsets(radius)
    same = torch.zeros((len(offsets), h, w), dtype=torch.bool, device=cells.device)
    different = torch.zeros_like(same)
    for p, (dy, dx) in enumerate(offsets):
        (ya, xa), (yb, xb) = offset_slices(h, w, dy, dx)
        a, b = known[ya, xa], known[yb, xb]
        both = (a != IGNORE) & (b != IGNORE)
        same[p, ya, xa] = both & (a == b)
        different[p, ya, xa] = both & (a != b)
    return same, different


def edited_affinities(weights: torch.Tensor, same: torch.Tensor, different: torch.Tensor) -> dict:
    """The affinities [P, h, w] of each of WALKS: as given, and put right where `same` /
    `different` (ground_truth_pairs) know the pair."""
    cut = weights.masked_fill(different, 0.0)
    return {"as trained": weights, "no leaks": cut, "full links": weights.masked_fill(same, 1.0),
            "perfect": cut.masked_fill(same, 1.0)}


def walk_grid(results: Path | None = None) -> np.ndarray:
    """The background scores a walk is swept over: the run's own evaluation grid, as its `rw` row's
    metrics record it (results/metrics/train_split/rw.json or results/metrics/rw.json), else the
    schema's evaluation.bg_threshold; so that a walk's best here is found as that row's sweep finds it."""
    paths = (results / "metrics" / "train_split" / "rw.json", results / "metrics" / "rw.json") if results else ()
    for path in paths:
        if path.is_file():
            sweep = json.loads(path.read_text()).get("threshold_sweep")
            if sweep:
                return np.array([point["threshold"] for point in sweep])
    from .config import resolve

    return threshold_grid(resolve({})["evaluation"]["bg_threshold"])


class WalkCheck:
    """The walk of each image's CAMs over each of WALKS' affinities, scored against the ground
    truth: per walk, power and number of steps, the confusion matrices at every background score
    (irn, per_class) or of the argmax (psa). `cfg` is the run's random_walk block (beta, logt,
    normalisation, alpha); `logts` the walks' lengths (2^logt steps; default: cfg's logt),
    `betas` the powers of the affinities (default: cfg's beta)."""

    def __init__(self, cfg: dict, radius: int, n_classes: int, grid=None, logts=None, betas=None):
        self.cfg, self.radius, self.n = cfg, radius, n_classes
        self.logts = sorted(set(logts)) if logts else [cfg["logt"]]
        self.betas = sorted(set(betas)) if betas else [cfg["beta"]]
        self.settings = [(beta, logt) for beta in self.betas for logt in self.logts]
        self.by_argmax = cfg["normalisation"] == "psa"
        self.grid = None if self.by_argmax else (walk_grid() if grid is None else np.asarray(grid))
        # the grid's score nearest the run's bg_threshold: what its rw masks take (psa: none)
        self.run_index = None if self.by_argmax else grid_index(self.grid, float(cfg["bg_threshold"]))
        self.run_score = None if self.by_argmax else float(self.grid[self.run_index])
        # per (beta, logt, walk): its confusion matrix (psa) or its sweep over the background score
        self.scores = {(*setting, name): np.zeros((n_classes, n_classes), np.int64) if self.by_argmax
                       else ThresholdSweep(n_classes, self.grid) for setting in self.settings for name in WALKS}

    def add(self, features: torch.Tensor, cells: torch.Tensor, cams: np.ndarray, keys, gt: np.ndarray) -> None:
        """features [C, h, w] of the AffinityNet, the ground truth gt [H, W] and its cell_labels
        (on the features' device), CAMs [K, H, W] (max 1 each) with their class values `keys`."""
        grid = features.shape[1:]
        maps = torch.from_numpy(cams.astype(np.float32)).to(features.device)
        values = np.concatenate([[0], np.asarray(keys, np.int64)])
        same, different = ground_truth_pairs(cells, self.radius, grid)
        for beta in self.betas:
            weights, valid = neighbour_affinities(features, self.radius, beta)
            for name, w in edited_affinities(weights, same, different).items():
                transition = transition_from_affinities(w, valid, self.radius)
                for logt in self.logts:
                    scores = scores_by_walk(transition, grid, maps, {**self.cfg, "logt": logt})
                    up = upsample_scores(scores.cpu(), gt.shape).numpy()
                    if self.by_argmax:
                        self.scores[beta, logt, name] += confusion_matrix(gt, values[up.argmax(0)], self.n)
                    else:  # the background score is the walk's one parameter: each walk gets its best
                        self.scores[beta, logt, name].add(gt, up[1:], keys)

    def result(self) -> dict:
        """{(beta, logt): {walk: (best mIoU, its background score, mIoU at run_score)}}; psa's
        argmax: (mIoU, None, None)."""
        out = {setting: {} for setting in self.settings}
        for (beta, logt, name), found in self.scores.items():
            if self.by_argmax:
                out[beta, logt][name] = (mean_iou(found), None, None)
                continue
            scores, best = found.curve()
            out[beta, logt][name] = (scores[best], float(self.grid[best]), scores[self.run_index])
        return out


@torch.no_grad()
def check(model_path, records: list[mf.Record], max_images: int | None = None, device: str = "auto",
          walk: dict | None = None) -> dict:
    """summary() over the records' images and ground-truth masks, the network on `device` (auto:
    a GPU where there is one, as the walk); records without a usable mask are skipped, logged and
    counted, and a split with none at all is a ValueError. With `walk` ({"cfg": the run's
    random_walk block, "cams": image id -> (CAMs, keys) or None, optionally "grid", "logts" and
    "betas" as WalkCheck takes them}) also WalkCheck's result, under "walks", over the images with CAMs
    of their size, and its run_score (the grid's score nearest the run's) under "walk_run_score"."""
    from .devices import pick_device
    from .nets import load_affinity_net

    dev = pick_device(device)
    model, saved = load_affinity_net(model_path, dev)
    n_classes = len(saved["classes"]) + 1
    same, diff = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    used = skipped = walked = 0
    walks = WalkCheck(walk["cfg"], saved["radius"], n_classes, walk.get("grid"), walk.get("logts"),
                      walk.get("betas")) if walk else None
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
        cams = walk["cams"](r.image_id) if walk else None
        if cams is not None and cams[0].shape[1:] == gt.shape:
            walks.add(features, cells, *cams, gt)
            walked += 1
        elif walk:
            log.warning("no walk for %s: %s", r.image_id, "no CAMs" if cams is None else "CAMs of another size")
    if not used:
        raise ValueError(f"none of the {len(records[:max_images])} images has a usable ground-truth mask "
                         f"({skipped} skipped): affinity-check needs a split with masks")
    out = {**summary(same, diff), "images": used, "skipped": skipped, "radius": saved["radius"]}
    if walk:
        out.update(walks=walks.result() if walked else None, walked_images=walked, walk_run_score=walks.run_score)
    return out


def walk_inputs(results: Path, split: str, stack: contextlib.ExitStack) -> dict:
    """The run's CAMs of `split` (image id -> (CAMs, keys) or None) and its walk's settings."""
    from .artifacts import ArtifactReader, ShardSet

    cam_paths = sorted((results / "cam" / split).glob("*.h5"))
    walk_paths = sorted((results / "rw" / split).glob("*.h5"))
    if not cam_paths:
        raise FileNotFoundError(f"{results / 'cam' / split}: no CAMs to walk (`snakemake` makes them in a run "
                                "with the random walk)")
    if not walk_paths:
        raise FileNotFoundError(f"{results / 'rw' / split}: no walk of this split to take its settings from "
                                "(a run that walks this split's CAMs makes it)")
    with ArtifactReader(walk_paths[0], stage="rw") as first:
        cfg = first.params()
    needed = ["normalisation", "beta", "logt"] + (["alpha"] if cfg.get("normalisation") == "psa" else ["bg_threshold"])
    missing = [k for k in needed if k not in cfg]
    if missing:
        raise ValueError(f"{walk_paths[0]}: the walk's settings lack {', '.join(missing)} (made by an older "
                         "version of the pipeline: `snakemake` remakes it)")
    shards = stack.enter_context(ShardSet(cam_paths, stage="cam"))

    def cams(image_id: str):
        if image_id not in shards:
            return None
        d = shards.read(image_id, "cams", "keys")
        return d["cams"], d["keys"]

    return {"cfg": cfg, "cams": cams, "grid": walk_grid(results)}
