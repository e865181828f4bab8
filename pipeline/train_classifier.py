"""Stage train_classifier: the multi-label classifier whose CAMs seed every method.

Multi-label soft-margin loss on image-level labels, SGD (momentum really on) with a poly
learning rate and the head at x`head_lr_mult`, random rescale / flip / colour jitter / crop.
Resumable: killed mid-training, a rerun continues from the last checkpoint when the
parameters, code and data are unchanged.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from . import manifest as mf
from .backbones import build_backbone
from .data import LabelledImages
from .nets import Classifier
from .problems import ProblemReport
from .provenance import params_hash
from .training import train_model

log = logging.getLogger(__name__)


def run(*, manifest_path, classes, cfg: dict, seed: int, compute: dict, code_hash: str,
        model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train on the manifest's images; `compute` (device, num_workers, checkpoint_minutes) says
    how to run and is not part of the run's identity: a checkpoint resumes on another device."""
    records = mf.read_tsv(manifest_path)
    run_hash = params_hash({"cfg": cfg, "seed": seed, "code": code_hash, "classes": list(classes),
                            "data": mf.digest(records)})
    torch.manual_seed(seed)
    model = Classifier(len(classes), build_backbone(cfg["backbone"], cfg["output_stride"]))

    def step_loss(model, batch):
        return F.multilabel_soft_margin_loss(model(batch["image"]), batch["target"]), {}

    train_model(model, LabelledImages(records, len(classes), cfg, seed, fill=model.backbone.normalization["mean"]),
                step_loss, cfg=cfg, seed=seed,
                compute=compute, run_hash=run_hash, problems=ProblemReport(problems_path), model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc="train_classifier",
                lr_config="classifier.lr", extra={"classes": list(classes)})
