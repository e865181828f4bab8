"""EPS (Lee et al., CVPR 2021): a C + 1 classifier whose maps are supervised by a saliency map.

The classifier (nets.SaliencyClassifier) has C class maps and one background map. Per image:
- p = softmax over the C + 1 maps at every position;
- each present class c is foreground when its binarised map overlaps the binarised saliency
  enough: O_c = |B(p_c) and B(S)| / |B(p_c)| > tau (B: threshold 0.5; tau = 0.4); otherwise
  it joins the background (a context class such as rails under a train);
- M_fg = sum of p over the foreground classes, M_bg = p_background + sum of p over the
  present classes that joined the background;
- estimated saliency = lambda * M_fg + (1 - lambda) * (1 - M_bg), lambda = 0.5;
- loss = MLSM(mean of the C class maps, image labels) + MSE(estimated saliency, S), the
  saliency brought down to the map grid by area averaging. Pixels outside the image (the
  crop's padding) do not count in the MSE.
The CAMs are the C foreground probabilities times the image labels (nets.SaliencyClassifier.cams).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from . import manifest as mf
from .backbones import build_backbone
from .data import ArtifactArrays, LabelledImages, augment
from .nets import SaliencyClassifier, init_from_classifier
from .problems import ProblemReport
from .provenance import file_id, params_hash
from .training import train_model

log = logging.getLogger(__name__)

PAD = 255  # the saliency crop is carried as uint8 0..254; 255 marks pixels outside the image


def foreground_classes(probs: torch.Tensor, target: torch.Tensor, saliency: torch.Tensor, tau: float,
                       inside: torch.Tensor | None = None) -> torch.Tensor:
    """bool [N, C]: present classes whose binarised map overlaps the binarised saliency by more
    than tau (as a share of the class map's area). probs [N, C + 1, h, w], saliency [N, 1, h, w];
    `inside` [N, 1, h, w] (bool) leaves the crop's padding out of both areas."""
    class_on = (probs[:, :-1] > 0.5).float()
    if inside is not None:
        class_on = class_on * inside.float()
    overlap = (class_on * (saliency > 0.5).float()).flatten(2).sum(-1) / (class_on.flatten(2).sum(-1) + 1e-4)
    return (overlap > tau) & (target > 0)


def estimated_saliency(probs: torch.Tensor, target: torch.Tensor, foreground: torch.Tensor, lam: float) -> torch.Tensor:
    """lambda * M_fg + (1 - lambda) * (1 - M_bg), [N, 1, h, w]."""
    fg_w = foreground.float()
    bg_w = ((target > 0) & ~foreground).float()
    fg = (probs[:, :-1] * fg_w[..., None, None]).sum(1, keepdim=True)
    bg = probs[:, -1:] + (probs[:, :-1] * bg_w[..., None, None]).sum(1, keepdim=True)
    return lam * fg + (1.0 - lam) * (1.0 - bg)


def to_grid(saliency: torch.Tensor, valid: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Saliency [N, 1, H, W] and its valid-pixel share, area-averaged to the map grid; the
    saliency is averaged over valid pixels only."""
    share = F.adaptive_avg_pool2d(valid.float(), size)
    mean = F.adaptive_avg_pool2d(saliency * valid, size) / share.clamp_min(1e-6)
    return mean, share


def eps_loss(maps: torch.Tensor, target: torch.Tensor, saliency: torch.Tensor, valid: torch.Tensor, tau: float,
             lam: float) -> tuple[torch.Tensor, dict]:
    """MLSM on the pooled class maps + MSE of the estimated saliency (see the module docstring).
    maps [N, C + 1, h, w] (logits), saliency / valid [N, 1, H, W] at crop size."""
    cls_loss = F.multilabel_soft_margin_loss(maps[:, :-1].mean(dim=(2, 3)), target)
    sal, share = to_grid(saliency, valid, maps.shape[2:])
    probs = maps.softmax(dim=1)
    fg = foreground_classes(probs.detach(), target, sal, tau, inside=share > 0)
    err = (estimated_saliency(probs, target, fg, lam) - sal) ** 2
    sal_loss = (err * share).sum() / share.sum().clamp_min(1e-6)
    n_present = (target > 0).sum().clamp_min(1)
    return cls_loss + sal_loss, {"cls": cls_loss.item(), "saliency": sal_loss.item(),
                                 "fg_share": (fg.sum() / n_present).item()}


class SalientImages(LabelledImages):
    """(augmented image, label vector, saliency cropped alike, valid pixels) per record.

    `saliency` reads the image's map from its shard (ArtifactArrays). The map rides through
    the image augmentation as a uint8 label map (0..254, nearest resampling), so the crop's
    padding is known exactly."""

    def __init__(self, records, n_classes: int, saliency: ArtifactArrays, cfg: dict, seed: int, fill):
        super().__init__(records, n_classes, cfg, seed, fill=fill)
        self.saliency = saliency

    def __getitem__(self, index: int):
        loaded = self.load(index)
        if isinstance(loaded, dict):
            return loaded
        r, rgb, rng, target = loaded
        sal = self.saliency.read(r.image_id).astype(np.float32)
        if sal.shape != rgb.shape[:2]:
            return {"error": (r.image_id, r.image, f"image size {rgb.shape[:2]} differs from its saliency map's "
                                                   f"{sal.shape} ({self.saliency.where[r.image_id]})")}
        level = np.rint(np.clip(sal, 0, 1) * (PAD - 1)).astype(np.uint8)
        image, lab = augment(rgb, self.cfg, rng, level, self.fill)
        valid = lab != PAD
        return {"image": image, "target": target, "saliency": (lab.float() / (PAD - 1) * valid)[None],
                "valid": valid[None], "index": index}


def run(*, manifest_path, saliency_paths, classifier_path, classes, cfg: dict, eps: dict, seed: int, compute: dict,
        code_hash: str, model_path, history_path, problems_path, checkpoint_path) -> None:
    """Train the EPS classifier; `cfg` is the CAM classifier's recipe (epochs already set),
    `eps` the method's block (tau, lam); `classifier_path` (or None) gives the starting backbone."""
    records = mf.read_tsv(manifest_path)
    problems = ProblemReport(problems_path)
    saliency = ArtifactArrays.from_shards(saliency_paths, stage="saliency", name="saliency")
    for r in records:
        if r.image_id not in saliency.where:
            problems.add(r.image_id, r.image, "no saliency map (see the saliency stage's problems)")
    records = [r for r in records if r.image_id in saliency.where]
    run_hash = params_hash({"cfg": cfg, "eps": eps, "seed": seed, "code": code_hash, "classes": list(classes),
                            "data": mf.digest(records), "saliency": [file_id(p) for p in saliency_paths],
                            "init": file_id(classifier_path) if classifier_path else None})
    torch.manual_seed(seed)
    model = SaliencyClassifier(len(classes), build_backbone(cfg["backbone"], cfg["output_stride"],
                                                            load_weights=not classifier_path))
    if classifier_path:
        # the class maps start as the classifier's CAMs and the background map at 0, so that
        # class maps pass the 0.5 binarisation of the overlap rule from the first step
        classifier = init_from_classifier(model, classifier_path, "eps")
        with torch.no_grad():
            model.head.weight[:-1].copy_(classifier.head.weight)
            model.head.weight[-1].zero_()
        log.info("backbone and class maps start from %s", classifier_path)

    def step_loss(model, batch):
        return eps_loss(model.maps(batch["image"]), batch["target"], batch["saliency"], batch["valid"],
                        eps["tau"], eps["lam"])

    train_model(model, SalientImages(records, len(classes), saliency, cfg, seed, model.backbone.normalization["mean"]),
                step_loss, cfg=cfg, seed=seed,
                compute=compute, run_hash=run_hash, problems=problems, model_path=model_path,
                history_path=history_path, checkpoint_path=checkpoint_path, desc="train_eps",
                lr_config="classifier.lr", extra={"classes": list(classes), "tau": eps["tau"], "lam": eps["lam"]})
