"""Instance masks scored as the PRM paper does: mean average precision at mask IoU 0.5 (mAP^r).

Ground truth: the dataset's instance map (0 background, 1..n instances, 255 ignored) with
each instance's class read from the class mask under it. Mask IoU leaves ignored pixels out
of both intersection and union. Per class, predictions from every image are ranked by score;
a prediction is a true positive when the ground-truth instance of its class it overlaps most
(in its image) reaches the IoU threshold and was not matched by a higher-ranked prediction,
else a false positive (PASCAL's rule). AP is the area under the precision-recall curve with
precision made monotone (PASCAL VOC 2010 on, all points); mAP^r is the mean over the classes
that have ground-truth instances.
"""
from __future__ import annotations

import json
import logging

import numpy as np

from . import manifest as mf
from .artifacts import ShardSet
from .atomic import write_text
from .imageio import IGNORE, ImageReadError, read_label_map
from .logs import progress
from .problems import ProblemReport

log = logging.getLogger(__name__)


def ground_truth_instances(instance_map: np.ndarray, class_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bool masks [G, H, W], class values [G]) of the instances of an instance map."""
    ids = [int(v) for v in np.unique(instance_map) if v not in (0, IGNORE)]
    masks = np.array([instance_map == i for i in ids], bool).reshape(-1, *instance_map.shape)
    classes = []
    for m in masks:
        values = class_map[m]
        values = values[(values != 0) & (values != IGNORE)]
        classes.append(int(np.bincount(values).argmax()) if values.size else 0)
    return masks, np.array(classes, np.int64)


def iou_matrix(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[P, G] mask IoU counted over `valid` pixels only."""
    p = (pred & valid).reshape(len(pred), valid.size).astype(np.float64)
    g = (gt & valid).reshape(len(gt), valid.size).astype(np.float64)
    inter = p @ g.T
    union = p.sum(1)[:, None] + g.sum(1)[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_image(pred_classes, pred_scores, ious: np.ndarray, gt_classes, threshold: float) -> np.ndarray:
    """bool [P]: which predictions of one image are true positives (PASCAL's rule, see above)."""
    tp = np.zeros(len(pred_classes), bool)
    taken = np.zeros(len(gt_classes), bool)
    for i in np.argsort(-np.asarray(pred_scores, np.float64), kind="stable"):
        same = np.asarray(gt_classes) == pred_classes[i]
        if not same.any():
            continue
        candidates = np.where(same, ious[i], -1.0)
        j = int(candidates.argmax())
        if candidates[j] >= threshold and not taken[j]:
            tp[i] = taken[j] = True
    return tp


def average_precision(scores, tp, n_gt: int) -> float:
    """Area under the monotone precision-recall curve of ranked detections."""
    if n_gt == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(tp, bool)[order]
    tps, fps = np.cumsum(hits), np.cumsum(~hits)
    recall = np.concatenate([[0.0], tps / n_gt, [1.0]])
    precision = np.concatenate([[0.0], tps / np.maximum(tps + fps, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(((recall[steps] - recall[steps - 1]) * precision[steps]).sum())


class InstanceScores:
    """Accumulates predictions and ground truth image by image; `result` gives mAP^r."""

    def __init__(self, n_classes: int, threshold: float = 0.5):
        self.n_classes, self.threshold = n_classes, threshold
        self.scores = {c: [] for c in range(1, n_classes + 1)}
        self.tp = {c: [] for c in range(1, n_classes + 1)}
        self.n_gt = np.zeros(n_classes + 1, np.int64)
        self.pairs = 0        # (image, class) with two or more ground-truth instances
        self.pairs_split = 0  # ... for which two or more instances of that class were predicted
        self.pairs_found = 0  # ... for which two or more of them were matched at the threshold
        self.n_images = 0
        self.n_predicted = 0

    def add(self, pred_masks, pred_classes, pred_scores, gt_masks, gt_classes, valid) -> None:
        pred_classes, gt_classes = np.asarray(pred_classes, np.int64), np.asarray(gt_classes, np.int64)
        ious = iou_matrix(np.asarray(pred_masks, bool), np.asarray(gt_masks, bool), valid)
        tp = match_image(pred_classes, pred_scores, ious, gt_classes, self.threshold)
        for c, s, t in zip(pred_classes, pred_scores, tp):
            self.scores[int(c)].append(float(s))
            self.tp[int(c)].append(bool(t))
        self.n_gt += np.bincount(gt_classes, minlength=self.n_classes + 1)[: self.n_classes + 1]
        for c in np.unique(gt_classes):
            if (gt_classes == c).sum() >= 2:
                self.pairs += 1
                self.pairs_split += int((pred_classes == c).sum() >= 2)
                self.pairs_found += int(tp[pred_classes == c].sum() >= 2)
        self.n_images += 1
        self.n_predicted += len(pred_classes)

    def result(self, names) -> dict:
        ap = {names[c - 1]: (average_precision(self.scores[c], self.tp[c], int(self.n_gt[c]))
                             if self.n_gt[c] else None) for c in range(1, self.n_classes + 1)}
        scored = [v for v in ap.values() if v is not None]
        return {"map_r": float(np.mean(scored)) if scored else None, "iou_threshold": self.threshold,
                "ap_per_class": ap,
                "n_gt_instances": {names[c - 1]: int(self.n_gt[c]) for c in range(1, self.n_classes + 1)},
                "n_images": self.n_images, "instances_per_image": self.n_predicted / max(self.n_images, 1),
                "same_class_pairs": {"images_classes": self.pairs,
                                     "two_or_more_predicted": self.pairs_split / self.pairs if self.pairs else None,
                                     "two_or_more_matched": self.pairs_found / self.pairs if self.pairs else None}}


def run(*, manifest_paths, instance_paths, classes, split: str, threshold: float, out_path, problems_path) -> dict:
    """mAP^r of the instance masks (stage prm) of a split; images without an instance map or
    an output go to the problem report."""
    problems = ProblemReport(problems_path)
    records = [r for p in manifest_paths for r in mf.read_tsv(p)]
    acc = InstanceScores(len(classes), threshold)
    with ShardSet(instance_paths, stage="prm") as shards:
        for r in progress(records, desc=f"evaluate prm instances {split}", unit="img"):
            if r.image_id not in shards:
                problems.add(r.image_id, r.image, "no instance masks: skipped upstream (see prm_peaks problems)")
                continue
            if not r.instances or not r.mask:
                problems.add(r.image_id, r.image, "no ground-truth instance map or class mask in the manifest")
                continue
            try:
                inst, cls = read_label_map(r.instances), read_label_map(r.mask)
            except ImageReadError as e:
                problems.add(r.image_id, r.instances, str(e))
                continue
            d = shards.read(r.image_id, "instance_masks", "instance_classes", "instance_scores")
            if inst.shape != cls.shape or d["instance_masks"].shape[1:] != inst.shape:
                problems.add(r.image_id, r.instances, f"instance map {inst.shape}, class mask {cls.shape} and "
                                                      f"predictions {d['instance_masks'].shape[1:]} differ in size")
                continue
            gt_masks, gt_classes = ground_truth_instances(inst, cls)
            acc.add(d["instance_masks"].astype(bool), d["instance_classes"], d["instance_scores"], gt_masks,
                    gt_classes, inst != IGNORE)
    if acc.n_images == 0:
        raise ValueError(
            f"evaluate prm instances: no image of split {split!r} could be evaluated (see {problems_path})")
    result = {"stage": "prm", "split": split, **acc.result(list(classes))}
    write_text(out_path, json.dumps(result, indent=1))
    problems.write()
    log.info("prm instances on %s: mAP^r@%.2f %.4f over %d images", split, threshold, result["map_r"] or 0,
             acc.n_images)
    return result
