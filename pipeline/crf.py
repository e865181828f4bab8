"""Dense CRF (Kraehenbuehl & Koltun, pydensecrf): the one CRF module every stage uses.

A profile names the unary and the pairwise terms (values in the config schema, `crf.profiles`):
    deeplab  segmenter outputs: 10 iterations, Gaussian (sxy 1, w 3), bilateral (67, 3, 4)
    psa      CAM score maps (PSA): Gaussian (3, 3), bilateral (80, 13, 10), unary -log(score)
    irn      label maps (IRN): unary_from_labels with gt_prob 0.7, Gaussian (3, 3), bilateral (50, 5, 10)
`unary: scores` takes -log of the scores normalised per pixel (PSA feeds unnormalised CAM
scores; normalising only adds a per-pixel constant, which mean field ignores); `unary: labels`
takes the argmax of the scores as a label map with confidence gt_prob. The bilateral term
sees the real RGB image as uint8: a mean-subtracted image cast to uint8 (as one public
implementation does) would wrap around and make edges where there are none.

`parallel_map` spreads per-image work over processes (pydensecrf holds the GIL).
"""
from __future__ import annotations

import collections
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

EPS = 1e-5


def dense_crf(rgb: np.ndarray, scores: np.ndarray, profile: dict) -> np.ndarray:
    """Mean-field marginals float32 [K, H, W] of K labels given score maps [K, H, W] >= 0."""
    return dense_crfs(rgb, [scores], profile)[0]


def dense_crfs(rgb: np.ndarray, score_maps: list[np.ndarray], profile: dict, scale: float = 1.0
               ) -> list[np.ndarray]:
    """dense_crf of each of several score maps of one image. Maps with the same number of labels
    share one CRF, whose pairwise lattice (a quarter of a CRF's time on a photo) is built once:
    each inference starts again from its own unary, so the marginals are those of separate CRFs.

    scale < 1 runs the CRF on the image and the maps shrunk by `scale` (area averages; the
    kernels' sxy, in pixels, shrink with them) and returns its marginals resized back
    (bilinear): about 1 / scale^2 times faster, for maps whose use is coarser than a pixel."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"dense_crf needs an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
    if not 0 < scale <= 1:
        raise ValueError(f"dense_crf: scale must be in (0, 1], got {scale}")
    h, w = rgb.shape[:2]
    for scores in score_maps:
        if scores.shape[1:] != (h, w):
            raise ValueError(f"dense_crf: score maps {scores.shape[1:]} and image {rgb.shape[:2]} differ in size")
    if scale == 1:
        return _dense_crfs(rgb, score_maps, profile)
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    shrunk = {**profile, **{k: {**profile[k], "sxy": profile[k]["sxy"] * scale} for k in ("gaussian", "bilateral")}}
    rgb_small = np.array(Image.fromarray(rgb).resize(small[::-1], Image.BOX))
    out = _dense_crfs(rgb_small, [_resize_maps(m, small, Image.BOX) for m in score_maps], shrunk)
    return [_resize_maps(m, (h, w), Image.BILINEAR) for m in out]


def _resize_maps(maps: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    """float32 maps [K, H, W] resized to `size` (H, W) one by one with a PIL filter (not
    data.resize: the CRF runs in forked workers that stay off torch, see parallel_map)."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(m, np.float32)).resize(size[::-1], resample))
                     for m in maps]) if len(maps) else np.zeros((0, *size), np.float32)


def _dense_crfs(rgb: np.ndarray, score_maps: list[np.ndarray], profile: dict) -> list[np.ndarray]:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    h, w = rgb.shape[:2]
    crfs, out = {}, []
    for scores in score_maps:
        k = scores.shape[0]
        if k < 2:  # nothing to decide between
            out.append(np.ones((k, h, w), np.float32))
            continue
        if k not in crfs:
            d = crfs[k] = dcrf.DenseCRF2D(w, h, k)
            g, b = profile["gaussian"], profile["bilateral"]
            d.addPairwiseGaussian(sxy=g["sxy"], compat=g["compat"])
            d.addPairwiseBilateral(sxy=b["sxy"], srgb=b["srgb"], rgbim=np.ascontiguousarray(rgb),
                                   compat=b["compat"])
        if profile["unary"] == "labels":
            unary = unary_from_labels(scores.argmax(0), k, gt_prob=profile["gt_prob"], zero_unsure=False)
        else:
            p = np.clip(scores.astype(np.float32), 0, None)
            p = p / np.maximum(p.sum(0, keepdims=True), EPS)
            unary = -np.log(np.clip(p, EPS, 1.0)).reshape(k, -1)
        crfs[k].setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
        out.append(np.asarray(crfs[k].inference(profile["iterations"]), np.float32).reshape(k, h, w))
    return out


def crf_labels(rgb: np.ndarray, scores: np.ndarray, profile: dict) -> np.ndarray:
    """Index (0..K-1) of the most probable label per pixel after the CRF, as int64 [H, W]."""
    return dense_crf(rgb, scores, profile).argmax(0)


def parallel_map(fn, items, workers: int):
    """Yield fn(item) in order, computed by `workers` processes (in this process when 1).

    At most 2 x workers items are in flight, so memory stays bounded on large shards. `fn`
    must be a module-level function (it is pickled by name) that does not use torch.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    # fork: spawn and forkserver would re-run the caller's main module in each worker, which for
    # a Snakemake script is the whole stage. Workers must therefore stay off torch (its thread
    # pool does not survive a fork) and off the parent's HDF5 handles: they get arrays.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
