"""Stage train_sccam: one SC-CAM round's classifier, with parent and sub-category heads.

loss = MLSM(parent scores, image labels) + sub_weight * MLSM(sub-category scores, the
round's cluster labels), dropout before both heads (SC-CAM: weight 5, dropout 0.5); the rest
of the recipe (augmentation, SGD, poly schedule, resumable checkpoints) is the CAM
classifier's. The paper restarts every round from ImageNet weights (`backbone.weights`);
`init_from_previous` starts instead from the previous round's backbone and parent head (the
sub-category head is new each round: cluster indices carry no meaning across rounds).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from . import manifest as mf
from .backbones import build_backbone
from .data import LabelledImages
from .nets import SubCategoryClassifier, load_classifier
from .problems import ProblemReport
from .provenance import file_id, params_hash
from .sccam import read_subcategories
from .training import train_model

log = logging.getLogger(__name__)


def sccam_loss(parent: torch.Tensor, sub: torch.Tensor, target: torch.Tensor, sub_target: torch.Tensor,
               sub_weight: float) -> tuple[torch.Tensor, dict]:
    """MLSM(parent) + sub_weight * MLSM(sub-category), and the two parts for the log."""
    parent_loss = F.multilabel_soft_margin_loss(parent, target)
    sub_loss = F.multilabel_soft_margin_loss(sub, sub_target)
    return parent_loss + sub_weight * sub_loss, {"parent": parent_loss.item(), "sub": sub_loss.item()}


def run(*, manifest_path, clusters_path, previous_model, classes, cfg: dict, sccam: dict, round_: int, seed: int,
        compute: dict, code_hash: str, model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train round `round_` on the images that have sub-category labels; `cfg` is the CAM
    classifier's recipe (epochs already set for the round), `sccam` the method's block."""
    records = mf.read_tsv(manifest_path)
    k, sub_targets = read_subcategories(clusters_path, classes)
    problems = ProblemReport(problems_path)
    for r in records:
        if r.image_id not in sub_targets:
            problems.add(r.image_id, r.image, "no sub-category label (skipped upstream, see sccam_features problems)")
    records = [r for r in records if r.image_id in sub_targets]
    run_hash = params_hash({"cfg": cfg, "sccam": sccam, "round": round_, "seed": seed, "code": code_hash,
                            "classes": list(classes), "data": mf.digest(records), "clusters": file_id(clusters_path),
                            "previous": file_id(previous_model) if previous_model else None})
    torch.manual_seed(seed + round_)
    model = SubCategoryClassifier(len(classes), k, build_backbone(cfg["backbone"], cfg["output_stride"],
                                                                  load_weights=not previous_model), sccam["dropout"])
    if previous_model:
        previous, _ = load_classifier(previous_model)
        theirs, ours = previous.arch["backbone"]["name"], cfg["backbone"]["name"]
        if theirs != ours:
            raise ValueError(f"{previous_model}: a {theirs} classifier, classifier.backbone.name is {ours}")
        if previous.backbone.feature_layer != model.backbone.feature_layer:
            raise ValueError(f"{previous_model}: a classifier fitted by classifier.fit: lbfgs (its backbone ImageNet's "
                             "unchanged, ending at its last block); set sccam.init_from_previous: false")
        model.backbone.load_state_dict(previous.backbone.state_dict())
        model.head.load_state_dict(previous.head.state_dict())
        log.info("round %d starts from %s", round_, previous_model)

    def step_loss(model, batch):
        parent, sub = model.both_heads(batch["image"])
        return sccam_loss(parent, sub, batch["target"], batch["sub_target"], sccam["sub_weight"])

    train_model(model, LabelledImages(records, len(classes), cfg, seed + round_, sub_targets,
                                      fill=model.backbone.normalization["mean"]), step_loss, cfg=cfg,
                seed=seed + round_, compute=compute, run_hash=run_hash, problems=problems, model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc=f"train_sccam r{round_}",
                lr_config="sccam.lr", extra={"classes": list(classes), "round": round_})
