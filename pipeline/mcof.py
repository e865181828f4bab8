"""MCOF (Wang et al., CVPR 2018), its first step: initial seeds from CAMs and superpixels
(stage mcof_seeds). The loop's other steps have their own modules: pipeline/regionnet.py
(RegionNet), pipeline/mcof_saliency.py (the saliency-guided refinement); PixelNet is the
DeepLab-LargeFOV segmenter (pipeline/train_segmenter.py). workflow/rules/mcof.smk wires the
rounds. No public implementation exists; the choices the paper leaves open are written where
they are made.

Initial seeds (`initial_seeds`): each present class's CAM is averaged inside each
superpixel; a superpixel seeds class c when its average is a local maximum among its
neighbouring superpixels (and above `bg_threshold`, so that flat zero areas are no maxima)
or exceeds `threshold`. A superpixel seeded by several classes takes the one with the
highest average. Superpixels where every present class averages below `bg_threshold` are
background seeds; the rest stay undecided (255).
"""
from __future__ import annotations

import numpy as np

UNDECIDED = 255


def initial_seeds(means: np.ndarray, keys: np.ndarray, adjacency: np.ndarray, threshold: float,
                  bg_threshold: float) -> np.ndarray:
    """uint8 [n] label per superpixel: a class value of `keys` (seed), 0 (background seed) or
    255 (undecided). means [K, n]: each present class's CAM averaged per superpixel."""
    k, n = means.shape
    if k == 0:  # an image without labels (dataset.on_empty_labels: keep) is background
        return np.zeros(n, np.uint8)
    labels = np.full(n, UNDECIDED, np.uint8)
    # the largest neighbour value of each superpixel, per class (-inf without neighbours)
    neighbour_max = np.where(adjacency[None], means[:, None, :], -np.inf).max(axis=2)
    seeded = ((means >= neighbour_max) & (means > bg_threshold)) | (means > threshold)
    score = np.where(seeded, means, -np.inf)
    best = score.argmax(axis=0)
    has_seed = seeded.any(axis=0)
    labels[has_seed] = np.asarray(keys, np.uint8)[best[has_seed]]
    labels[means.max(axis=0) < bg_threshold] = 0
    return labels


def seed_mask(cams: np.ndarray, keys: np.ndarray, segments: np.ndarray, cfg: dict) -> np.ndarray:
    """uint8 [H, W] seed label map of one image from its CAMs [K, H, W] and superpixels."""
    from .superpixels import region_graph, region_means

    labels = initial_seeds(region_means(cams.astype(np.float32), segments), keys, region_graph(segments),
                           cfg["threshold"], cfg["bg_threshold"])
    return labels[segments]


def run_seeds(*, manifest_path, cam_path, superpixel_path, cfg: dict, code_hash: str, split: str, shard: str,
              out_path, problems_path) -> None:
    """Stage mcof_seeds: the seed label map (`mask`) of every image of a shard."""
    import logging

    from . import manifest as mf
    from .artifacts import ArtifactReader, ArtifactWriter
    from .logs import progress
    from .problems import ProblemReport, with_output

    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    with ArtifactReader(cam_path, stage="cam") as cams_in, \
            ArtifactReader(superpixel_path, stage="superpixels") as sp_in:
        todo = with_output(with_output(records, cams_in, problems, "CAM", "make_cams"), sp_in, problems,
                           "superpixels", "superpixels")
        logging.getLogger(__name__).info("%s: seeds of %d images", shard, len(todo))
        with ArtifactWriter(out_path, stage="mcof_seeds", split=split, shard=shard, classes=cams_in.classes(),
                            params=cfg, code_hash=code_hash) as out:
            for r in progress(todo, desc=f"mcof_seeds {split}/{shard}", unit="img"):
                d = cams_in.read(r.image_id, "cams", "keys")
                segments = sp_in.read(r.image_id, "superpixels")["superpixels"]
                if segments.shape != d["cams"].shape[1:]:
                    sp_in.fail(r.image_id,
                               f"superpixels {segments.shape} and CAMs {d['cams'].shape[1:]} differ in size")
                out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask},
                        mask=seed_mask(d["cams"], d["keys"], segments, cfg))
    problems.write()
