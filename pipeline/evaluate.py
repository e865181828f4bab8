"""Evaluation: mIoU from one confusion matrix accumulated over the whole split.

Classes are 0 (background) .. C; ground-truth pixels equal to 255 are ignored. The IoU of a
class is TP / (TP + FP + FN); a class absent from both ground truth and prediction over the
whole split has no IoU (NaN, left out of the mean). For CAMs the background score is a
constant threshold: every threshold of a sweep is evaluated in one pass over the data, from a
joint histogram of (true class, CAM argmax class, rank of the CAM max among the thresholds).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from . import manifest as mf
from .artifacts import ShardSet
from .atomic import write_text
from .imageio import IGNORE, ImageReadError, read_label_map
from .logs import progress
from .problems import ProblemReport

log = logging.getLogger(__name__)


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """[n, n] int64 counts, rows = ground truth, columns = prediction; gt 255 ignored."""
    valid = gt != IGNORE
    g, p = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    if g.size and (g.max() >= n_classes or p.max() >= n_classes or p.min() < 0):
        raise ValueError(f"label values outside 0..{n_classes - 1} (gt max {g.max()}, pred max {p.max()})")
    return np.bincount(g * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def cam_labels(cams: np.ndarray, keys: np.ndarray, threshold: float) -> np.ndarray:
    """Label map from CAMs: the class of the highest CAM where it exceeds `threshold`, else 0."""
    h, w = cams.shape[1:]
    if cams.shape[0] == 0:
        return np.zeros((h, w), np.uint8)
    # compared in float64, as ThresholdSweep does: float16 CAMs against a Python float would
    # round the threshold to float16 and flip the pixels that sit on it
    top = cams.max(0).astype(np.float64)
    return np.where(top > threshold, np.asarray(keys)[cams.argmax(0)], 0).astype(np.uint8)


class ThresholdSweep:
    """Confusion matrices of CAM label maps for many background thresholds, in one pass."""

    def __init__(self, n_classes: int, thresholds):
        self.n = n_classes
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.hist = np.zeros((n_classes, n_classes, len(self.thresholds) + 1), np.int64)

    def add(self, gt: np.ndarray, cams: np.ndarray, keys: np.ndarray) -> None:
        valid = gt != IGNORE
        g = gt[valid].astype(np.int64)
        if cams.shape[0]:
            top = cams.max(0)[valid].astype(np.float64)
            cls = np.asarray(keys, np.int64)[cams.argmax(0)[valid]]
            # rank = how many thresholds lie strictly below the CAM max: foreground for those
            rank = np.searchsorted(self.thresholds, top, side="left")
        else:
            cls = np.zeros_like(g)
            rank = np.zeros_like(g)
        if g.size and (g.max() >= self.n or cls.max() >= self.n):
            raise ValueError(f"label values outside 0..{self.n - 1}")
        t = len(self.thresholds) + 1
        counts = np.bincount((g * self.n + cls) * t + rank, minlength=self.n * self.n * t)
        self.hist += counts.reshape(self.n, self.n, t)

    def confusion(self, k: int) -> np.ndarray:
        """Confusion matrix at thresholds[k]: pixels with rank > k are foreground."""
        fg = self.hist[:, :, k + 1:].sum(2)
        bg = self.hist[:, :, :k + 1].sum((1, 2))
        conf = fg.copy()
        conf[:, 0] += bg
        return conf

    def curve(self) -> tuple[list[float], int]:
        """(mIoU at each threshold, in the grid's order; the index of the best): the one place a
        threshold is chosen on a sweep. ValueError when no labelled pixel was added."""
        miou = [mean_iou(self.confusion(k)) for k in range(len(self.thresholds))]
        if np.all(np.isnan(miou)):
            raise ValueError("no labelled ground-truth pixel to score (every one 255, or no image added)")
        return miou, int(np.nanargmax(miou))

    def table(self, miou: list[float]) -> list[dict]:
        """The sweep as the metrics JSON keeps it: [{threshold, miou}, ...]."""
        return [{"threshold": float(t), "miou": m} for t, m in zip(self.thresholds, miou)]


def threshold_grid(spec: dict) -> np.ndarray:
    """min, min + step, ... up to max (included when it falls on the grid)."""
    n = int(np.floor((spec["max"] - spec["min"]) / spec["step"] + 1e-9)) + 1
    return np.round(spec["min"] + spec["step"] * np.arange(n), 6)


def chosen_threshold(metrics_path) -> tuple[float, str]:
    """(threshold, split) chosen on another split: the best background threshold of a row's
    evaluation on the training split (a CAM row's best_threshold, a walk's sweep_best_threshold),
    the papers' protocol for pseudo masks, so that nothing is chosen on the split reported."""
    m = json.loads(Path(metrics_path).read_text())
    threshold = m.get("best_threshold") if m.get("best_threshold") is not None else m.get("sweep_best_threshold")
    if threshold is None:
        raise ValueError(f"{metrics_path}: holds no best background threshold to apply")
    return float(threshold), m["split"]


def grid_index(grid: np.ndarray, threshold: float) -> int:
    """The index of the grid's threshold nearest `threshold`."""
    return int(np.argmin(np.abs(grid - threshold)))


def load_ground_truth(record: mf.Record, n_classes: int) -> np.ndarray:
    """The record's class mask; ImageReadError when missing or holding values outside 0..C / 255."""
    if not record.mask:
        raise ImageReadError(f"image {record.image_id}: no ground-truth mask in the manifest")
    gt = read_label_map(record.mask)
    bad = invalid_labels(gt, n_classes)
    if bad:
        raise ImageReadError(f"{record.mask}: mask values {bad} outside 0..{n_classes - 1} and 255")
    return gt


def invalid_labels(mask: np.ndarray, n_classes: int) -> list[int]:
    """The first five values of a label map that are neither a class 0..C nor 255 (undecided)."""
    return np.unique(mask[(mask >= n_classes) & (mask != IGNORE)]).tolist()[:5]


def metrics_dict(stage: str, split: str, classes, conf: np.ndarray, n_images: int, n_skipped: int, **extra) -> dict:
    iou = iou_per_class(conf)
    names = ["background", *classes]
    return {"stage": stage, "split": split, "miou": mean_iou(conf),
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
            "n_images": n_images, "n_skipped": n_skipped, **extra,
            "classes": names, "confusion": conf.tolist()}


class MaskScores:
    """Label maps against a reference (the ground truth, or the pseudo masks a segmenter learned
    from), accumulated over a split. Reference pixels of 255 are not scored; pixels a mask leaves
    undecided (255) are left out of `conf` (the mIoU of the decided pixels, with `precision`
    and `coverage`) and count as background in `conf_full` (`miou_full`)."""

    def __init__(self, n_classes: int, reference: str = "ground-truth"):
        self.n = n_classes
        self.reference = reference  # what the error names when no reference pixel is scored
        self.conf = np.zeros((n_classes, n_classes), np.int64)
        self.conf_full = np.zeros((n_classes, n_classes), np.int64)
        self.n_labelled = 0
        self.n_images = 0

    def add(self, gt: np.ndarray, mask: np.ndarray) -> None:
        self.n_labelled += int((gt != IGNORE).sum())
        decided = mask != IGNORE
        self.conf += confusion_matrix(np.where(decided, gt, IGNORE), np.where(decided, mask, 0), self.n)
        self.conf_full += confusion_matrix(gt, np.where(decided, mask, 0), self.n)
        self.n_images += 1

    def metrics(self, stage: str, split: str, classes, n_skipped: int, **extra) -> dict:
        if self.n_labelled == 0:
            raise ValueError(f"evaluate {stage}: every {self.reference} pixel of split {split!r} is 255 (not scored): "
                             "nothing to score against")
        decided = int(self.conf.sum())
        full = iou_per_class(self.conf_full)
        return metrics_dict(stage, split, classes, self.conf, self.n_images, n_skipped,
                            precision=float(np.trace(self.conf) / decided) if decided else float("nan"),
                            coverage=decided / self.n_labelled, miou_full=mean_iou(self.conf_full),
                            per_class_iou_full={n: (None if np.isnan(v) else float(v))
                                                for n, v in zip(["background", *classes], full)}, **extra)


def _paired(records, shards: ShardSet, names, n_classes: int, problems: ProblemReport, desc: str, upstream: str):
    """Yield (record, ground truth, {name: array}, reader) of every record with an output and a
    usable mask of the output's size; the rest go to `problems`."""
    for r in progress(records, desc=desc, unit="img"):
        if r.image_id not in shards:
            problems.add(r.image_id, r.image, f"no output: the image was skipped upstream (see {upstream} problems)")
            continue
        try:
            gt = load_ground_truth(r, n_classes)
        except ImageReadError as e:
            problems.add(r.image_id, r.mask, str(e))
            continue
        d = shards.read(r.image_id, *names)
        size = d["mask"].shape if "mask" in d else d["cams"].shape[1:]
        if size != gt.shape:
            problems.add(r.image_id, r.mask, f"mask size {gt.shape} differs from the output size {size}")
            continue
        yield r, gt, d, shards.reader(r.image_id)


def _finish(metrics: dict, stage: str, split: str, out_path, problems: ProblemReport) -> dict:
    write_text(out_path, json.dumps(metrics, indent=1))
    problems.write()
    log.info("%s on %s: mIoU %.4f (%d images, %d skipped)", stage, split, metrics["miou"], metrics["n_images"],
             len(problems))
    return metrics


def evaluate_cams(*, manifest_paths, cam_paths, classes, thresholds: dict, split: str, stage: str,
                  out_path, problems_path, artifact_stage: str = "cam", extra: dict | None = None,
                  chosen_on=None) -> dict:
    """mIoU of the CAMs of a split (all shards) against the ground truth at a constant background
    threshold: the one chosen on another split when `chosen_on` (that row's metrics on the
    training split) is given, else this split's best (`threshold_from` says which). The sweep
    and this split's own best stay in the metrics (`split_best_threshold`, `split_best_miou`).
    `extra` facts about the stage (SC-CAM's cluster purity) are added to the metrics."""
    n = len(classes) + 1
    grid = threshold_grid(thresholds)
    sweep = ThresholdSweep(n, grid)
    problems = ProblemReport(problems_path)
    records = [r for p in manifest_paths for r in mf.read_tsv(p)]
    n_images = 0
    with ShardSet(cam_paths, stage=artifact_stage) as shards:
        for r, gt, d, reader in _paired(records, shards, ("cams", "keys"), n, problems,
                                        f"evaluate {stage} {split}", artifact_stage):
            if d["cams"].ndim != 3 or d["keys"].shape != d["cams"].shape[:1]:
                reader.fail(r.image_id, f"cams {d['cams'].shape} and keys {d['keys'].shape} do not match")
            sweep.add(gt, d["cams"], d["keys"])
            n_images += 1
    if n_images == 0:
        raise ValueError(f"evaluate {stage}: no image of split {split!r} could be evaluated "
                         f"(see {problems_path})")
    try:
        curve, best = sweep.curve()
    except ValueError as e:
        raise ValueError(f"evaluate {stage} on split {split!r}: {e}") from None
    used, threshold_from = best, split
    if chosen_on:
        threshold, threshold_from = chosen_threshold(chosen_on)
        used = grid_index(grid, threshold)
    metrics = metrics_dict(stage, split, classes, sweep.confusion(used), n_images, len(problems),
                           best_threshold=float(grid[used]), threshold_from=threshold_from,
                           split_best_threshold=float(grid[best]), split_best_miou=curve[best], **(extra or {}),
                           threshold_sweep=sweep.table(curve))
    return _finish(metrics, stage, split, out_path, problems)


def evaluate_masks(*, manifest_paths, mask_paths, classes, split: str, stage: str, artifact_stage: str,
                   out_path, problems_path, sweep: dict | None = None, chosen_on=None) -> dict:
    """mIoU of the label maps `mask` of a split against the ground truth.

    Pixels a mask leaves undecided (255, as affinity labels and seeds do) are left out of the
    confusion matrix: the mIoU is then that of the decided pixels. `precision` (decided pixels
    whose label is right) and `coverage` (decided share of the labelled ground-truth pixels)
    say how much of the image that is; a complete mask has coverage 1. `miou_full` counts the
    undecided pixels as background instead, as a segmenter's output would be scored (MCOF
    reports its seeds so).

    With `sweep` (a threshold grid spec) the stage's score maps (`scores`, `keys`, background
    first) are also evaluated at every constant background score, as the CAMs are; the row
    stays that of the masks as written, the sweep is in the metrics for choosing the threshold.
    With `chosen_on` too (the row's metrics on the training split), the mIoU at the threshold
    best there is `chosen_threshold_miou`: what the masks score with a threshold not chosen on
    the split reported.
    """
    n = len(classes) + 1
    scores = MaskScores(n)
    problems = ProblemReport(problems_path)
    records = [r for p in manifest_paths for r in mf.read_tsv(p)]
    if sweep:
        from .data import upsample_scores  # torch, only for stages that store score maps
    grid = threshold_grid(sweep) if sweep else None
    scores_sweep = ThresholdSweep(n, grid) if sweep else None
    with ShardSet(mask_paths, stage=artifact_stage) as shards:
        for r, gt, d, reader in _paired(records, shards, ("mask",), n, problems, f"evaluate {stage} {split}",
                                        artifact_stage):
            if sweep:
                s = reader.read(r.image_id, "scores", "keys")
                scores_sweep.add(gt, upsample_scores(s["scores"][1:], gt.shape).numpy(), s["keys"][1:])
            mask = d["mask"]
            bad = invalid_labels(mask, n)
            if bad:
                reader.fail(r.image_id, f"mask values {bad} outside 0..{n - 1} and 255")
            scores.add(gt, mask)
    if scores.n_images == 0:
        raise ValueError(f"evaluate {stage}: no image of split {split!r} could be evaluated (see {problems_path})")
    extra = {}
    if sweep:
        curve, best = scores_sweep.curve()
        extra = {"sweep_best_threshold": float(grid[best]), "sweep_best_miou": curve[best],
                 "threshold_sweep": scores_sweep.table(curve)}
        if chosen_on:
            threshold, threshold_from = chosen_threshold(chosen_on)
            used = grid_index(grid, threshold)
            extra.update(chosen_threshold=float(grid[used]), chosen_threshold_miou=curve[used],
                         chosen_threshold_from=threshold_from)
    metrics = scores.metrics(stage, split, classes, len(problems), **extra)
    return _finish(metrics, stage, split, out_path, problems)


def evaluate_agreement(*, manifest_paths, mask_paths, source_paths, classes, split: str, stage: str,
                       source_stage: str, out_path, problems_path) -> dict:
    """How closely a segmenter's label maps on its training split reproduce the pseudo masks it
    learned from (`source_stage`), scored as mIoU with those masks in place of the ground truth
    (their undecided pixels, 255, left out). No ground truth is read: a segmenter's setting
    (head rate, steps, frozen stages) can be chosen by it on photos where the split with ground
    truth is the one reported."""
    n = len(classes) + 1
    # the source's undecided pixels (255) stand where the ground truth's ignored ones would
    scores = MaskScores(n, reference=f"{source_stage} mask")
    problems = ProblemReport(problems_path)
    records = [r for p in manifest_paths for r in mf.read_tsv(p)]
    with ShardSet(mask_paths, stage=stage) as rows, ShardSet(source_paths, stage=source_stage) as sources:
        for r in progress(records, desc=f"agreement {stage} {split}", unit="img"):
            missing = [name for name, shards in ((stage, rows), (source_stage, sources)) if r.image_id not in shards]
            if missing:
                problems.add(r.image_id, r.image, f"no {' or '.join(missing)} mask: the image was skipped upstream")
                continue
            mask, reference = rows.read(r.image_id, "mask")["mask"], sources.read(r.image_id, "mask")["mask"]
            if mask.shape != reference.shape:
                problems.add(r.image_id, r.image, f"{stage} mask {mask.shape} and {source_stage} mask "
                                                  f"{reference.shape} differ in size")
                continue
            for name, m, shards in ((stage, mask, rows), (source_stage, reference, sources)):
                bad = invalid_labels(m, n)
                if bad:
                    shards.reader(r.image_id).fail(r.image_id, f"{name} mask values {bad} outside 0..{n - 1} and 255")
            scores.add(reference, mask)
    if scores.n_images == 0:
        raise ValueError(f"agreement {stage}: no image of split {split!r} has both masks (see {problems_path})")
    metrics = scores.metrics(stage, split, classes, len(problems), reference=source_stage)
    return _finish(metrics, stage, split, out_path, problems)
