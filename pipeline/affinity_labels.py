"""Stage affinity_labels: confident foreground and background of the CAMs (PSA / IRN).

Two background settings turn the CAMs of an image into two label maps, each refined by the
dense CRF:
    psa mode: background score (1 - max_c CAM_c)^alpha, alpha = fg_alpha (low: the objects win
              wherever their CAM is fair) and bg_alpha (high: background only where every
              CAM is near zero)
    irn mode: constant background scores fg_threshold and bg_threshold
The fg setting gives the object classes; the bg setting the confident background:
    label = fg label where that is an object class,
            0 (background) where both settings say background,
            255 (ignore) elsewhere.
(IRN's rule; PSA marks background wherever the bg setting says so, which differs only where the
two CRFs disagree.) The maps are stored per shard as uint8 `mask` [H, W]. crf_scale < 1 runs the
CRFs on the image shrunk by it (AffinityNet reads the labels once per stride-8 cell).
"""
from __future__ import annotations

import logging

import numpy as np

from . import manifest as mf
from .artifacts import ArtifactReader, ArtifactWriter
from .crf import dense_crfs, parallel_map
from .imageio import IGNORE, ImageReadError, read_image_sized
from .logs import progress
from .problems import ProblemReport, with_output

log = logging.getLogger(__name__)


def background_scores(cams: np.ndarray, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """The (fg setting, bg setting) background score maps [H, W] of CAMs [K, H, W]."""
    h, w = cams.shape[1:]
    if cfg["mode"] == "psa":
        rest = 1.0 - (cams.max(0) if len(cams) else np.zeros((h, w), np.float32))
        return rest ** cfg["fg_alpha"], rest ** cfg["bg_alpha"]
    return np.full((h, w), cfg["fg_threshold"], np.float32), np.full((h, w), cfg["bg_threshold"], np.float32)


def combine(fg_label: np.ndarray, bg_label: np.ndarray) -> np.ndarray:
    """Objects from the fg setting, background where both settings agree, the rest ignored."""
    out = fg_label.astype(np.uint8).copy()
    out[fg_label == 0] = IGNORE
    out[(fg_label == 0) & (bg_label == 0)] = 0
    return out


def confident_labels(rgb: np.ndarray, cams: np.ndarray, keys: np.ndarray, cfg: dict, profile: dict) -> np.ndarray:
    """uint8 [H, W]: class values of `keys` (confident objects), 0 (confident background), 255."""
    cams = np.clip(cams.astype(np.float32), 0.0, 1.0)
    values = np.concatenate([[0], np.asarray(keys, np.int64)])
    fg_bg, bg_bg = background_scores(cams, cfg)
    fg, bg = (values[m.argmax(0)] for m in dense_crfs(rgb, [np.concatenate([fg_bg[None], cams]),
                                                           np.concatenate([bg_bg[None], cams])], profile,
                                                          cfg["crf_scale"]))
    return combine(fg, bg)


def _one_image(job):
    """Worker: (image_id, image path, cams, keys, cfg, profile) -> (image_id, mask or error)."""
    image_id, path, cams, keys, cfg, profile = job
    try:
        return image_id, confident_labels(read_image_sized(path, cams.shape[1:], "CAM"), cams, keys, cfg, profile)
    except ImageReadError as e:
        return image_id, str(e)


def run(*, manifest_path, cam_path, cfg: dict, profile: dict, classes, workers: int, code_hash: str,
        split: str, shard: str, out_path, problems_path) -> None:
    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    by_id = {r.image_id: r for r in records}
    with ArtifactReader(cam_path, stage="cam") as cams_in:
        todo = with_output(records, cams_in, problems, "CAM", "make_cams")

        def jobs():
            for r in todo:
                d = cams_in.read(r.image_id, "cams", "keys")
                yield r.image_id, r.image, d["cams"], d["keys"], cfg, profile

        log.info("%s: affinity labels of %d images (%s mode) with %d CRF workers",
                 shard, len(todo), cfg["mode"], workers)
        params = {"affinity_labels": cfg, "crf": profile}
        with ArtifactWriter(out_path, stage="affinity_labels", split=split, shard=shard, classes=classes,
                            params=params, code_hash=code_hash) as out:
            results = parallel_map(_one_image, jobs(), workers)
            for image_id, result in progress(results, total=len(todo), desc=f"affinity_labels {split}/{shard}",
                                             unit="img"):
                if isinstance(result, str):
                    problems.add(image_id, by_id[image_id].image, result)
                    continue
                out.add(image_id, {"image_path": by_id[image_id].image, "mask_path": by_id[image_id].mask},
                        mask=result)
    problems.write()
