"""MCOF's saliency-guided refinement (stage mcof_saliency), round 1 only.

For an image whose label holds a single object class c, RegionNet's regions are combined
with the saliency map in a Bayesian way. RegionNet's probability of c for each pixel's
superpixel is the prior P(obj); the saliency value s of the pixel is the observation, with
likelihoods p(s | obj) and p(s | bg) estimated per image as normalised histograms (`bins`
levels) of the saliency inside and outside RegionNet's region of c. The posterior is

    P(obj | s) = p(s | obj) P(obj) / (p(s | obj) P(obj) + p(s | bg) (1 - P(obj)))

and a pixel is c where it exceeds `threshold`, background elsewhere. Salient pixels that look
like the inside of the region join the object (parts RegionNet missed); salient clutter that
RegionNet rejected stays out where its prior is low. Images with several classes (whose
saliency cannot say which object is which) and without labels keep RegionNet's map. Later
rounds skip this stage, as the paper does, to keep the saliency's noise out.
"""
from __future__ import annotations

import logging

import numpy as np

from .artifacts import ArtifactReader, ArtifactWriter
from .logs import progress

log = logging.getLogger(__name__)


def bayesian_refinement(prior: np.ndarray, region: np.ndarray, saliency: np.ndarray, bins: int = 16,
                        eps: float = 1e-3) -> np.ndarray:
    """float32 [H, W] posterior P(obj | saliency) from the prior P(obj) [H, W] in 0..1,
    RegionNet's object region (bool [H, W], where the likelihoods are measured) and the
    saliency map [H, W] in 0..1 (see the module docstring). `eps` keeps empty bins finite."""
    level = np.minimum((np.clip(saliency, 0, 1) * bins).astype(np.int64), bins - 1).ravel()
    region = np.asarray(region, bool).ravel()
    inside = np.bincount(level[region], minlength=bins) + eps
    outside = np.bincount(level[~region], minlength=bins) + eps
    like_obj, like_bg = (inside / inside.sum())[level], (outside / outside.sum())[level]
    p = np.clip(prior.astype(np.float64), 0, 1).ravel()
    post = like_obj * p / np.maximum(like_obj * p + like_bg * (1 - p), 1e-12)
    return post.reshape(prior.shape).astype(np.float32)


def refine_image(mask: np.ndarray, probs: np.ndarray, keys: np.ndarray, segments: np.ndarray,
                 saliency: np.ndarray, cfg: dict) -> np.ndarray:
    """uint8 [H, W] refined label map of one image from RegionNet's map `mask`, its
    per-superpixel probabilities `probs` [n, 1 + K] over `keys` (0 then the image's classes),
    the superpixels and the saliency map (see the module docstring)."""
    if len(keys) != 2:
        return mask
    cls = int(keys[1])
    posterior = bayesian_refinement(probs[:, 1].astype(np.float32)[segments], mask == cls, saliency, cfg["bins"])
    return np.where(posterior > cfg["threshold"], cls, 0).astype(np.uint8)


def run(*, region_path, superpixel_path, saliency_path, cfg: dict, code_hash: str, split: str, shard: str,
        out_path) -> None:
    """Stage mcof_saliency: the refined label map `mask` of every image of a shard."""
    refined, unrefined = 0, []
    with ArtifactReader(region_path) as r_in, ArtifactReader(superpixel_path, stage="superpixels") as s_in, \
            ArtifactReader(saliency_path, stage="saliency") as sal_in, \
            ArtifactWriter(out_path, stage="mcof_saliency", split=split, shard=shard, classes=r_in.classes(),
                           params=cfg, code_hash=code_hash) as out:
        for image_id in progress(r_in.image_ids(), desc=f"mcof_saliency {split}/{shard}", unit="img"):
            d = r_in.read(image_id, "mask", "probs", "keys")
            if image_id not in sal_in:  # e.g. a folder source without this image's map
                unrefined.append(image_id)
                out.add(image_id, r_in.image_attrs(image_id), mask=d["mask"])
                continue
            saliency = sal_in.read(image_id, "saliency")["saliency"].astype(np.float32)
            if saliency.shape != d["mask"].shape:
                sal_in.fail(image_id, f"saliency {saliency.shape} and regions {d['mask'].shape} differ in size")
            segments = s_in.read(image_id, "superpixels")["superpixels"]
            mask = refine_image(d["mask"], d["probs"], d["keys"], segments, saliency, cfg)
            refined += len(d["keys"]) == 2
            out.add(image_id, r_in.image_attrs(image_id), mask=mask)
    log.info("%s: %d single-class images refined with saliency", shard, refined)
    if unrefined:
        log.warning("%s: %d image(s) without a saliency map keep RegionNet's regions (see %s's problems): %s",
                    shard, len(unrefined), saliency_path, ", ".join(unrefined[:5]))
