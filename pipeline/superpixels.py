"""Superpixels: the bottom-up regions of MCOF (seeds, RegionNet) and of saliency detection.

One int32 label map per image, regions numbered 0..n-1 without gaps. The graph-based method
of Felzenszwalb and Huttenlocher (scikit-image `felzenszwalb`: scale, sigma, min_size) is
MCOF's choice and the default; SLIC (`slic`: n_segments, compactness) is the option.
Pure functions on arrays; the stage that stores them per shard comes with MCOF.
"""
from __future__ import annotations

import numpy as np

METHODS = ("felzenszwalb", "slic")


def consecutive(segments: np.ndarray) -> np.ndarray:
    """The same partition with labels 0..n-1 (in order of first label value), int32."""
    return np.unique(segments, return_inverse=True)[1].reshape(segments.shape).astype(np.int32)


def superpixels(rgb: np.ndarray, method: str = "felzenszwalb", **params) -> np.ndarray:
    """int32 [H, W] region labels 0..n-1 of a uint8 RGB image."""
    from skimage import segmentation

    if method == "felzenszwalb":
        segments = segmentation.felzenszwalb(rgb, **params)
    elif method == "slic":
        segments = segmentation.slic(rgb, start_label=0, **params)
    else:
        raise ValueError(f"superpixel method {method!r}: choose one of {', '.join(METHODS)}")
    return consecutive(segments)


def region_graph(segments: np.ndarray) -> np.ndarray:
    """Symmetric bool adjacency [n, n] of the regions of a 0..n-1 label map (4-connectivity)."""
    n = int(segments.max()) + 1
    adj = np.zeros((n, n), bool)
    for a, b in ((segments[:, :-1], segments[:, 1:]), (segments[:-1], segments[1:])):
        diff = a != b
        adj[a[diff], b[diff]] = True
    return adj | adj.T


def region_sizes(segments: np.ndarray) -> np.ndarray:
    return np.bincount(segments.ravel(), minlength=int(segments.max()) + 1)


def region_means(maps: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Mean of each map inside each region: maps [K, H, W] -> [K, n] (CAMs of K classes, or
    the 3 channels of a colour image moved to the front)."""
    k = maps.shape[0]
    n = int(segments.max()) + 1
    flat = segments.ravel()
    sums = np.zeros((k, n))
    for i in range(k):
        sums[i] = np.bincount(flat, maps[i].ravel().astype(np.float64), minlength=n)
    return sums / np.maximum(region_sizes(segments), 1)[None]


def run(*, manifest_path, cfg: dict, classes, code_hash: str, split: str, shard: str, out_path,
        problems_path) -> None:
    """The superpixels of one shard: int32 `superpixels` [H, W] per image; cfg = {"method",
    <method>: its parameters}."""
    import logging

    from . import manifest as mf
    from .artifacts import ArtifactWriter
    from .logs import progress
    from .problems import ProblemReport, readable_images

    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    method = cfg["method"]
    logging.getLogger(__name__).info("%s: %s superpixels of %d images", shard, method, len(records))
    with ArtifactWriter(out_path, stage="superpixels", split=split, shard=shard, classes=classes, params=cfg,
                        code_hash=code_hash) as out:
        for r, rgb in readable_images(progress(records, desc=f"superpixels {split}/{shard}", unit="img"), problems):
            seg = superpixels(rgb, method, **cfg[method])
            out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask, "height": rgb.shape[0],
                                 "width": rgb.shape[1], "n_regions": int(seg.max()) + 1}, superpixels=seg)
    problems.write()
