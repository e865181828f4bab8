"""Stage train_classifier: the multi-label classifier whose CAMs seed every method.

Multi-label soft-margin loss on image-level labels. `fit: sgd` (IRN's): SGD (momentum really
on) with a poly learning rate and the head at x`head_lr_mult`, random rescale / flip / colour
jitter / crop; resumable: killed mid-training, a rerun continues from the last checkpoint when
the parameters, code and data are unchanged. `fit: lbfgs`: the backbone fixed whole, its
features taken from its last block (Backbone features="last_block"), and the head fitted to
convergence on the pooled features of the whole images (and their mirror images), with weight
decay as its L2 penalty: logistic regression on fixed features.
"""
from __future__ import annotations

import json
import logging
import time

import torch
import torch.nn.functional as F

from . import manifest as mf
from .atomic import write_text
from .backbones import build_backbone
from .data import LabelledImages, to_tensor
from .devices import pick_device
from .logs import progress
from .nets import Classifier, cpu_channels_last, save_model
from .problems import ProblemReport, readable_images
from .provenance import params_hash
from .training import train_model

log = logging.getLogger(__name__)

LBFGS_MAX_ITER = 500  # the photo sample's fits converge in 38 (320 features) and 238 (1280) iterations


def run(*, manifest_path, classes, cfg: dict, seed: int, compute: dict, code_hash: str,
        model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train on the manifest's images; `compute` (device, num_workers, checkpoint_minutes) says
    how to run and is not part of the run's identity: a checkpoint resumes on another device."""
    records = mf.read_tsv(manifest_path)
    if cfg["fit"] == "lbfgs":  # no checkpoint: the features and the fit take seconds to minutes
        fixed = {**cfg["backbone"], "frozen_stages": 4, "features": "last_block"}
        model = Classifier(len(classes), build_backbone(fixed, cfg["output_stride"]))
        problems = ProblemReport(problems_path)
        fitted = fit_linear_head(model, records, cfg, pick_device(compute["device"]), problems)
        save_model(model.cpu().to(memory_format=torch.contiguous_format), model_path, {"classes": list(classes)})
        write_text(history_path, json.dumps({"epochs": [fitted]}, indent=1))
        problems.write()
        return
    torch.manual_seed(seed)
    run_hash = params_hash({"cfg": cfg, "seed": seed, "code": code_hash, "classes": list(classes),
                            "data": mf.digest(records)})
    model = Classifier(len(classes), build_backbone(cfg["backbone"], cfg["output_stride"]))

    def step_loss(model, batch):
        return F.multilabel_soft_margin_loss(model(batch["image"]), batch["target"]), {}

    train_model(model, LabelledImages(records, len(classes), cfg, seed, fill=model.backbone.normalization["mean"]),
                step_loss, cfg=cfg, seed=seed,
                compute=compute, run_hash=run_hash, problems=ProblemReport(problems_path), model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc="train_classifier",
                lr_config="classifier.lr", extra={"classes": list(classes)})


def pooled_training_features(model: Classifier, records, n_classes: int, flip: bool, device,
                             problems: ProblemReport) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D], targets [N, C]): the fixed backbone's pooled features of each whole
    training image (and of its mirror image with `flip`) with the image's labels."""
    features, targets = [], []
    model.eval()
    with torch.no_grad():
        for r, rgb in readable_images(progress(records, desc="train_classifier features", unit="img"), problems):
            x = to_tensor(rgb).to(device)[None]
            views = torch.cat([x, x.flip(-1)]) if flip else x
            features.append(model.pooled_features(views.contiguous(memory_format=torch.channels_last)).cpu())
            target = torch.zeros(n_classes)
            target[[v - 1 for v in r.labels]] = 1
            targets.append(target.expand(len(views), -1))
    if not features:
        raise ValueError("train_classifier: no readable training image (see the problem report)")
    return torch.cat(features), torch.cat(targets)


def fit_head_weights(features: torch.Tensor, targets: torch.Tensor, weight_decay: float,
                     max_iter: int = LBFGS_MAX_ITER) -> tuple[torch.Tensor, float, int]:
    """(weights [C, D], data loss, L-BFGS iterations) minimising the multi-label soft-margin loss
    of features @ weights.T against targets plus weight_decay / 2 x |weights|^2: a convex
    problem, so the minimum does not depend on a seed or a schedule."""
    features, targets = features.double(), targets.double()
    weights = torch.zeros(targets.shape[1], features.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], lr=1, max_iter=max_iter, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        loss = F.multilabel_soft_margin_loss(features @ weights.T, targets) + weight_decay / 2 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        data_loss = float(F.multilabel_soft_margin_loss(features @ weights.T, targets))
    return weights.detach().float(), data_loss, optimizer.state[weights]["n_iter"]


def fit_linear_head(model: Classifier, records, cfg: dict, device, problems: ProblemReport) -> dict:
    """`fit: lbfgs`: the head of `model` (whose backbone is fixed) fitted to the pooled features
    of the training images; returns the history entry (one pass over the images; `views` counts
    the mirror images too)."""
    start = time.perf_counter()
    cpu_channels_last(model.to(device), device)
    features, targets = pooled_training_features(model, records, model.head.out_channels, cfg["flip"], device,
                                                 problems)
    weights, data_loss, iterations = fit_head_weights(features, targets, cfg["weight_decay"])
    if iterations >= LBFGS_MAX_ITER:
        log.warning("train_classifier: L-BFGS stopped at its %d iterations before converging; the head may sit "
                    "short of its fit (a larger classifier.weight_decay makes the problem better conditioned)",
                    LBFGS_MAX_ITER)
    model.head.weight.data.copy_(weights[:, :, None, None])
    seconds = time.perf_counter() - start
    images = len(features) // (2 if cfg["flip"] else 1)
    log.info("train_classifier: head fitted by L-BFGS on %d views of %d images (%d features): loss %.4f after %d "
             "iterations, %.1f s", len(features), images, features.shape[1], data_loss, iterations, seconds)
    return {"epoch": 1, "loss": data_loss, "lbfgs_iterations": iterations, "images": images, "views": len(features),
            "seconds": round(seconds, 1), "images_per_s": images / max(seconds, 1e-9)}
