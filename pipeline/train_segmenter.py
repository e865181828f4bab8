"""Stage train_segmenter: a DeepLab segmenter (LargeFOV or ASPP) trained on pseudo masks.

The masks are any stage's label maps on the training split (the random walk's by default)
or, for the `fully_supervised` upper bound, the ground-truth masks; 255 is ignored. The loss
is the pixel cross-entropy; `balanced` averages it per class first (each class present in
the batch weighs the same whatever its pixel count), which keeps a segmenter trained on pseudo
masks from collapsing onto the dominant background. SGD with real momentum, poly schedule
over cfg["iterations"] steps, head at x`head_lr_mult`; resumable like every trainer.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from . import manifest as mf
from .manifest import GROUND_TRUTH
from .backbones import build_backbone
from .data import MaskedCrops, folder_mask_locations, mask_locations
from .imageio import IGNORE
from .nets import DeepLab, init_from_classifier
from .problems import ProblemReport
from .provenance import file_id, params_hash
from .training import train_model

log = logging.getLogger(__name__)

def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, balanced: bool = False) -> torch.Tensor:
    """Cross-entropy of logits [N, C, H, W] against target [N, H, W] (255 ignored)."""
    target = target.long()
    if not balanced:
        if not (target != IGNORE).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, target, ignore_index=IGNORE)
    per_pixel = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none")
    classes = [c for c in target.unique().tolist() if c != IGNORE]
    if not classes:
        return logits.sum() * 0.0
    return torch.stack([per_pixel[target == c].mean() for c in classes]).mean()


def run(*, manifest_path, mask_paths, source: str, classes, cfg: dict, seed: int, compute: dict, code_hash: str,
        classifier_path, model_path, history_path, problems_path, checkpoint_path, mask_folder=None) -> None:
    """`mask_folder`: learn from a folder of PNG label maps (source `folder`) instead of a stage's shards."""
    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    if mask_folder:
        where = folder_mask_locations(records, mask_folder, len(classes) + 1, problems)
    else:
        where = mask_locations(records, None if source == GROUND_TRUTH else mask_paths, source, problems)
    records = [r for r in records if r.image_id in where]
    if not records:
        raise ValueError(f"{manifest_path}: none of the training images has a {source} mask")
    run_hash = params_hash({"cfg": cfg, "seed": seed, "code": code_hash, "source": source, "classes": list(classes),
                            "data": mf.digest(records), "masks": sorted(file_id(p) for p in set(where.values())),
                            "init": file_id(classifier_path) if cfg["init_from_classifier"] else None})
    torch.manual_seed(seed)
    model = DeepLab(len(classes) + 1, cfg["head"],
                    build_backbone(cfg["backbone"], cfg["output_stride"], load_weights=not cfg["init_from_classifier"]),
                    dropout=cfg["dropout"])
    if cfg["init_from_classifier"]:
        init_from_classifier(model, classifier_path, "segmenter")

    def step_loss(model, batch):
        return segmentation_loss(model(batch["image"]), batch["label"], cfg["balanced"]), {}

    stage = None if source == GROUND_TRUTH or mask_folder else source
    log.info("training DeepLab-%s (%s) on the %s masks of %d images", cfg["head"], cfg["backbone"]["name"], source,
             len(records))
    train_model(model, MaskedCrops(records, where, cfg, seed, stage=stage, fill=model.backbone.normalization["mean"]),
                step_loss, cfg=cfg, seed=seed,
                compute=compute, run_hash=run_hash, problems=problems, model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc=f"train_segmenter {cfg['head']}",
                lr_config="segmenter.lr", extra={"classes": list(classes), "source": source})
