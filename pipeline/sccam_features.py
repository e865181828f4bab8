"""Stage sccam_features (SC-CAM, pipeline/sccam.py): a global-average-pooled backbone feature
per training image from the previous round's classifier (the whole image at scale 1, no flip),
stored per shard for sccam_clusters. Kept apart from the clustering so that an edit of the
networks reruns this stage, not the k-means."""
from __future__ import annotations

import numpy as np
import torch

from . import manifest as mf
from .artifacts import ArtifactWriter
from .data import to_tensor
from .devices import pick_device
from .logs import progress
from .nets import load_classifier
from .problems import ProblemReport, readable_images


@torch.no_grad()
def pooled_feature(model, rgb: np.ndarray, device="cpu") -> np.ndarray:
    """float32 [D] global-average-pooled backbone feature of the whole image."""
    x = to_tensor(rgb).to(device)[None]
    return model.pooled_features(x)[0].float().cpu().numpy()


def run_features(*, manifest_path, model_path, device: str, code_hash: str, params: dict, split: str, shard: str,
                 out_path, problems_path) -> None:
    records = mf.read_tsv(manifest_path)
    dev = pick_device(device)
    model, saved = load_classifier(model_path, dev, forward_only=True)
    problems = ProblemReport(problems_path)
    with ArtifactWriter(out_path, stage="sccam_features", split=split, shard=shard, classes=saved["classes"],
                        params=params, code_hash=code_hash) as out:
        for r, rgb in readable_images(progress(records, desc=f"sccam_features {shard}", unit="img"), problems):
            out.add(r.image_id, {"image_path": r.image}, feature=pooled_feature(model, rgb, dev),
                    keys=np.asarray(r.labels, dtype=np.uint8))
    problems.write()
