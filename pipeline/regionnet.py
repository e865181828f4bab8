"""MCOF's RegionNet: a classifier of superpixels (stages mcof_features, train_regionnet,
mcof_regionnet).

- Features (mcof_features): the CAM classifier's backbone run once on the whole image (scale
  1), its feature map averaged over each superpixel (`pool_region_features`). Computed once
  per image and shared by every round.
- Labels of round r (`region_labels`): the majority label of each superpixel in round r's
  seed map: round 1 the initial seeds (mcof_seeds), round r > 1 the predictions of PixelNet
  r - 1 on the training images. Superpixels whose majority is undecided (255) or a class
  absent from the image label are not trained on.
- Model: standardised features -> Linear(D, hidden) -> ReLU -> Dropout -> Linear(hidden, 1 + C)
  (background and every class), cross-entropy per superpixel, Adam. The paper's RegionNet is
  a CNN fine-tuned on superpixel regions and its code is not public; a head on the frozen
  CAM classifier's features is our choice: it trains in seconds, and offline the classifier is
  the only trained backbone there is.
- Application (`apply_regionnet`): softmax over background and the image's own classes only
  (the regions of absent classes are removed: their probability goes to the others), each
  superpixel takes its most probable label. Stored per image: the label map `mask`, the
  per-superpixel probabilities `probs` [n, 1 + K] and `keys` (0 then the image's classes).
"""
from __future__ import annotations

import json
import logging

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import manifest as mf
from .artifacts import ArtifactReader, ArtifactWriter
from .atomic import write_text
from .data import to_tensor
from .devices import pick_device
from .logs import progress
from .mcof import UNDECIDED
from .nets import load_saved, load_classifier, save_model
from .problems import ProblemReport, readable_images, with_output

log = logging.getLogger(__name__)


def pool_region_features(features: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """[n, D] mean feature of each superpixel: features [D, h, w] on a coarse grid, segments
    [H, W] (0..n-1) at image size. Each image pixel falls in one grid cell (nearest, by
    integer scaling), so a region's feature is the mean over its pixels of their cells'
    features: RegionNet's input, without resizing the feature map to image size."""
    d, h, w = features.shape
    big_h, big_w = segments.shape
    rows = (np.arange(big_h) * h // big_h)[:, None]
    cols = (np.arange(big_w) * w // big_w)[None, :]
    cell = (rows * w + cols).ravel()
    n = int(segments.max()) + 1
    counts = np.bincount(segments.ravel() * (h * w) + cell, minlength=n * h * w).reshape(n, h * w)
    weights = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return weights @ features.reshape(d, h * w).T


def region_labels(mask: np.ndarray, segments: np.ndarray, keys) -> np.ndarray:
    """uint8 [n]: the majority label of each superpixel in a label map (0 background, class
    values, 255 undecided); a majority class absent from the image's `keys` becomes 255."""
    n = int(segments.max()) + 1
    counts = np.bincount(segments.ravel().astype(np.int64) * 256 + mask.ravel(), minlength=n * 256).reshape(n, 256)
    labels = counts.argmax(1).astype(np.uint8)
    allowed = np.zeros(256, bool)
    allowed[[0, *np.asarray(keys, int).tolist()]] = True
    labels[~allowed[labels]] = UNDECIDED
    return labels


class RegionNet(nn.Module):
    """Standardised superpixel feature -> hidden layer -> background + C class logits."""

    def __init__(self, n_features: int, n_classes: int, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.arch = {"n_features": n_features, "n_classes": n_classes, "hidden": hidden, "dropout": dropout}
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.mlp = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_classes + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp((x - self.mean) / self.std)


def load_regionnet(path, device="cpu") -> tuple[RegionNet, dict]:
    return load_saved(path, lambda a: RegionNet(**a), "a RegionNet", device)


def apply_regionnet(model: RegionNet, features: np.ndarray, keys) -> tuple[np.ndarray, np.ndarray]:
    """(labels uint8 [n], probs float32 [n, 1 + K]) of an image's superpixels: softmax over
    background and the image's classes `keys` only."""
    keys = np.asarray(keys, np.int64)
    with torch.no_grad():
        logits = model(torch.as_tensor(features, dtype=torch.float32))
    allowed = torch.as_tensor(np.concatenate([[0], keys]))
    probs = logits[:, allowed].softmax(1).numpy()
    labels = np.concatenate([[0], keys]).astype(np.uint8)[probs.argmax(1)]
    return labels, probs


# ---------------------------------------------------------------- stages


@torch.no_grad()
def image_features(classifier, rgb: np.ndarray, segments: np.ndarray, device="cpu") -> np.ndarray:
    """float32 [n, D]: the classifier's backbone features of the whole image per superpixel."""
    x = to_tensor(rgb).to(device)[None]
    fmap = classifier.backbone(x)[0].float().cpu().numpy()
    return pool_region_features(fmap, segments).astype(np.float32)


def run_features(*, manifest_path, classifier_path, superpixel_path, device: str, code_hash: str, split: str,
                 shard: str, out_path, problems_path) -> None:
    """Stage mcof_features: `features` [n, D] (float16) and `keys` per image of a shard."""
    records = mf.read_tsv(manifest_path)
    dev = pick_device(device)
    classifier, saved = load_classifier(classifier_path, dev, forward_only=True)
    problems = ProblemReport(problems_path)
    with ArtifactReader(superpixel_path, stage="superpixels") as sp_in, \
            ArtifactWriter(out_path, stage="mcof_features", split=split, shard=shard, classes=saved["classes"],
                           params={}, code_hash=code_hash) as out:
        todo = with_output(records, sp_in, problems, "superpixels", "superpixels")
        for r, rgb in readable_images(progress(todo, desc=f"mcof_features {split}/{shard}", unit="img"), problems):
            segments = sp_in.read(r.image_id, "superpixels")["superpixels"]
            if segments.shape != rgb.shape[:2]:
                sp_in.fail(r.image_id, f"superpixels {segments.shape} and image {rgb.shape[:2]} differ in size")
            out.add(r.image_id, {"image_path": r.image}, features=image_features(classifier, rgb, segments, dev)
                    .astype(np.float16), keys=np.asarray(r.labels, np.uint8))
    problems.write()


def training_regions(feature_paths, superpixel_paths, label_paths, label_stage: str):
    """(features [N, D], labels [N]) of every decided superpixel of the training images."""
    xs, ys = [], []
    for f_path, s_path, l_path in zip(feature_paths, superpixel_paths, label_paths):
        with ArtifactReader(f_path, stage="mcof_features") as f_in, \
                ArtifactReader(s_path, stage="superpixels") as s_in, \
                ArtifactReader(l_path, stage=label_stage) as l_in:
            for image_id in f_in.image_ids():
                if image_id not in l_in:
                    continue  # skipped by the label stage, which reports it
                d = f_in.read(image_id, "features", "keys")
                segments = s_in.read(image_id, "superpixels")["superpixels"]
                labels = region_labels(l_in.read(image_id, "mask")["mask"], segments, d["keys"])
                keep = labels != UNDECIDED
                xs.append(d["features"][keep].astype(np.float32))
                ys.append(labels[keep])
    if not xs or not sum(len(y) for y in ys):
        raise ValueError(f"no decided superpixel to train RegionNet on in the {label_stage} masks")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def train_regionnet(x: np.ndarray, y: np.ndarray, n_classes: int, cfg: dict, seed: int) -> tuple[RegionNet, list]:
    """RegionNet trained on superpixel features x [N, D] with labels y [N] (0..C)."""
    torch.manual_seed(seed)
    model = RegionNet(x.shape[1], n_classes, cfg["hidden"], cfg["dropout"])
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.mean.copy_(xt.mean(0))
    model.std.copy_(xt.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in progress(range(cfg["epochs"]), desc="train_regionnet", unit="epoch"):
        model.train()
        total, correct = 0.0, 0
        for idx in torch.randperm(len(yt), generator=g).split(cfg["batch_size"]):
            logits = model(xt[idx])
            loss = F.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            correct += (logits.argmax(1) == yt[idx]).sum().item()
        history.append({"epoch": epoch + 1, "loss": total / len(yt), "accuracy": correct / len(yt)})
        log.info("epoch %d: loss %.4f, training accuracy %.3f", epoch + 1, history[-1]["loss"],
                 history[-1]["accuracy"])
    return model.eval(), history


def run_train(*, feature_paths, superpixel_paths, label_paths, label_stage: str, classes, cfg: dict, seed: int,
              model_path, history_path) -> None:
    """Stage train_regionnet: RegionNet of one round, on that round's seed superpixels."""
    x, y = training_regions(feature_paths, superpixel_paths, label_paths, label_stage)
    counts = np.bincount(y, minlength=len(classes) + 1)
    log.info("RegionNet on %d superpixels from the %s masks (background %d, classes %s)", len(y), label_stage,
             counts[0], counts[1:].tolist())
    model, history = train_regionnet(x, y, len(classes), cfg, seed)
    save_model(model, model_path, {"classes": list(classes), "source": label_stage})
    write_text(history_path, json.dumps({"epochs": history, "n_regions": len(y),
                                         "regions_per_class": counts.tolist()}, indent=1))


def run_regions(*, feature_path, superpixel_path, model_path, code_hash: str, stage: str, split: str, shard: str,
                out_path) -> None:
    """Stage mcof_regionnet: RegionNet's label map of every image of a shard."""
    model, saved = load_regionnet(model_path)
    with ArtifactReader(feature_path, stage="mcof_features") as f_in, \
            ArtifactReader(superpixel_path, stage="superpixels") as s_in, \
            ArtifactWriter(out_path, stage=stage, split=split, shard=shard, classes=saved["classes"],
                           params={"source": saved["source"]}, code_hash=code_hash) as out:
        for image_id in progress(f_in.image_ids(), desc=f"{stage} {split}/{shard}", unit="img"):
            d = f_in.read(image_id, "features", "keys")
            segments = s_in.read(image_id, "superpixels")["superpixels"]
            labels, probs = apply_regionnet(model, d["features"], d["keys"])
            attrs = s_in.image_attrs(image_id)
            out.add(image_id, {k: attrs[k] for k in ("image_path", "mask_path", "height", "width") if k in attrs},
                    mask=labels[segments], probs=probs.astype(np.float16),
                    keys=np.concatenate([[0], d["keys"]]).astype(np.uint8))
