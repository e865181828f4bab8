"""Stage crf_masks: the dense CRF on top of any stage that stores score maps (rw -> rw_crf, ...).

Reads `scores` [K, h, w] (possibly on a coarser grid than the image) and `keys` [K] (the
class value of each map, 0 = background) per image, upsamples the scores bilinearly to the
image size recorded with them (attrs height, width), runs the CRF with the chosen profile on
the real RGB image, and writes the label map `mask` = keys[argmax of the marginals] per
shard and as PNG label maps.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from . import manifest as mf
from .artifacts import ArtifactReader, ArtifactWriter
from .crf import crf_labels, parallel_map
from .data import upsample_scores
from .imageio import ImageReadError, read_image_sized, write_label_png
from .logs import progress
from .problems import ProblemReport, with_output

log = logging.getLogger(__name__)


def _one_image(job):
    """Worker (no torch here: it runs in a forked process): the CRF label map of one image."""
    image_id, path, scores, keys, profile = job
    try:
        rgb = read_image_sized(path, scores.shape[1:], "recorded")
    except ImageReadError as e:
        return image_id, str(e)
    return image_id, np.asarray(keys, np.uint8)[crf_labels(rgb, scores, profile)]


def run(*, manifest_path, source_path, source_stage: str, stage: str, profile: dict, workers: int,
        code_hash: str, split: str, shard: str, out_path, png_dir, problems_path) -> None:
    torch.set_num_threads(1)  # the work is in the CRF processes
    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    png_dir = Path(png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    by_id = {r.image_id: r for r in records}
    with ArtifactReader(source_path, stage=source_stage) as src:
        todo = with_output(records, src, problems, f"{source_stage} output", source_stage)

        def jobs():
            for r in todo:
                d = src.read(r.image_id, "scores", "keys")
                a = src.image_attrs(r.image_id)
                size = (int(a["height"]), int(a["width"]))
                yield r.image_id, r.image, upsample_scores(d["scores"], size).clamp_(min=0).numpy(), d["keys"], profile

        log.info("%s: CRF on %d %s outputs with %d workers", shard, len(todo), source_stage, workers)
        with ArtifactWriter(out_path, stage=stage, split=split, shard=shard, classes=src.classes(),
                            params={"source": source_stage, "crf": profile}, code_hash=code_hash) as out:
            for image_id, result in progress(parallel_map(_one_image, jobs(), workers), total=len(todo),
                                             desc=f"{stage} {split}/{shard}", unit="img"):
                if isinstance(result, str):
                    problems.add(image_id, by_id[image_id].image, result)
                    continue
                out.add(image_id, {"image_path": by_id[image_id].image, "mask_path": by_id[image_id].mask},
                        mask=result)
                write_label_png(png_dir / f"{image_id}.png", result)
    problems.write()

