"""Stage train_classifier: the multi-label classifier whose CAMs seed every method.

Multi-label soft-margin loss on image-level labels, SGD (momentum really on) with a poly
learning rate and the head at x`head_lr_mult`, random rescale / flip / colour jitter / crop.
Resumable: killed mid-training, a rerun continues from the last checkpoint when the
parameters, code and data are unchanged.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from . import manifest as mf
from .atomic import write_text
from .data import LabelledImages
from .nets import Classifier, save_model
from .problems import ProblemReport
from .provenance import params_hash
from .training import fit, pick_device, sgd

log = logging.getLogger(__name__)


def run(*, manifest_path, classes, cfg: dict, seed: int, compute: dict, code_hash: str,
        model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train on the manifest's images; `compute` (device, num_workers, checkpoint_minutes) says
    how to run and is not part of the run's identity: a checkpoint resumes on another device."""
    records = mf.read_tsv(manifest_path)
    run_hash = params_hash({"cfg": cfg, "seed": seed, "code": code_hash, "classes": list(classes),
                            "data": mf.digest(records)})
    dev = pick_device(compute["device"])
    torch.manual_seed(seed)
    model = Classifier(len(classes), cfg["depth"], cfg["output_stride"], cfg["pretrained"]).to(dev)
    optimizer = sgd(model.param_groups(), lr=cfg["lr"], mults={"head": cfg["head_lr_mult"]},
                    momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    problems = ProblemReport(problems_path)

    def step_loss(model, batch):
        logits = model(batch["image"].to(dev, non_blocking=True))
        return F.multilabel_soft_margin_loss(logits, batch["target"].to(dev)), {}

    history = fit(model=model, optimizer=optimizer, dataset=LabelledImages(records, len(classes), cfg, seed),
                  step_loss=step_loss, cfg=cfg, seed=seed, compute=compute, run_hash=run_hash,
                  checkpoint_path=checkpoint_path, problems=problems, device=dev, desc="train_classifier",
                  lr_config="classifier.lr")
    save_model(model.cpu(), model_path, {"classes": list(classes)})
    write_text(history_path, json.dumps({"epochs": history}, indent=1))
    problems.write()
    Path(checkpoint_path).unlink(missing_ok=True)
