"""Masks in and out of the pipeline as flat folders of PNG label maps.

- `export_masks`: a stage's label maps of one split as `<image_id>.png` (VOC palette, class
  values 0..C, 255 = ignore, the image's size), with `<split>.txt` (the image ids, one per
  line, as mmsegmentation's split files) and `<split>_pairs.txt` ("<image> <mask>" per line, as
  deeplab-pytorch's lists); a CAM stage's maps become labels at its background threshold.
  With `scores`, `<image_id>.npy` holds the score map: float16 [C + 1, H, W], background first,
  zero for the classes the stage has no map of.
- `evaluate_mask_folder`: the project's mask evaluation (evaluate.MaskScores: the same
  confusion matrix, mIoU over decided pixels, coverage, precision, miou_full) of any such
  folder against a split's ground truth; a missing, unreadable or misshapen mask is a row in
  the problems file, not a crash.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import manifest as mf
from .artifacts import ArtifactReader, ShardSet
from .atomic import atomic_path, write_text
from .evaluate import MaskScores, cam_labels, load_ground_truth
from .imageio import IGNORE, ImageReadError, read_folder_mask, write_label_png
from .logs import progress
from .problems import ProblemReport

log = logging.getLogger(__name__)


def stage_shards(results: Path, stage: str, split: str) -> list[Path]:
    """The HDF5 shards of a stage's split: `stage` is a folder (results/eps/u2netp/tau0.4/cam)
    or a stage name under `results` (cam, rw, deeplab_aspp_crf, mcof_seeds, ...)."""
    folder = Path(stage) if Path(stage).is_dir() and not (Path(results) / stage).is_dir() else Path(results) / stage
    shards = sorted((folder / split).glob("*.h5"))
    if not shards:
        known = sorted(p.parent.parent.name for p in Path(results).glob(f"*/{split}/*.h5"))
        raise FileNotFoundError(f"{folder / split}: no HDF5 shards of stage {stage!r}, split {split!r} (stages with "
                                f"that split under {results}: {', '.join(dict.fromkeys(known)) or 'none'}; "
                                "another stage's folder can be named by its path)")
    return shards


def read_manifest(results: Path, split: str) -> list[mf.Record]:
    path = Path(results) / "manifest" / f"{split}.tsv"
    if not path.is_file():
        found = sorted(p.stem for p in (Path(results) / "manifest").glob("*.tsv"))
        raise FileNotFoundError(
            f"{path}: no manifest of split {split!r} (splits of this run: {', '.join(found) or 'none'})")
    # paths in a manifest are relative to the run's directory (the folder holding results/)
    run_dir = Path(results).resolve().parent

    def rebased(value: str) -> str:
        return value if not value or Path(value).is_absolute() else str(run_dir / value)

    return [replace(r, image=rebased(r.image), mask=rebased(r.mask), instances=rebased(r.instances))
            for r in mf.read_tsv(path)]


def _label_map(reader: ArtifactReader, image_id: str, threshold: float | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(label map, score map [K + 1, H, W] or None, with keys) of one image of a mask or CAM artifact."""
    group = reader.file["images"][image_id]
    if "mask" in group:
        return reader.read(image_id, "mask")["mask"], None
    if "cams" not in group:
        reader.fail(image_id, f"neither a mask nor CAMs (has {sorted(group.keys())})")
    d = reader.read(image_id, "cams", "keys")
    if threshold is None:
        raise ValueError(f"{reader.path}: a CAM stage: give its background threshold (--threshold), "
                         "or name the stage of an evaluated row so that its chosen threshold is used")
    return cam_labels(d["cams"], d["keys"], threshold), d


def _full_scores(labels: np.ndarray, cams: dict | None, reader: ArtifactReader, image_id: str, n_classes: int,
                 threshold: float | None) -> np.ndarray:
    """float16 [C + 1, H, W]: the stage's scores per class (background first), 0 where it has none."""
    h, w = labels.shape
    out = np.zeros((n_classes, h, w), np.float16)
    if cams is not None:
        out[0] = threshold
        for k, c in enumerate(cams["keys"]):
            out[int(c)] = cams["cams"][k]
        return out
    group = reader.file["images"][image_id]
    if "scores" not in group:
        reader.fail(image_id, "no score map (`scores`) to export: this stage writes label maps only")
    from .data import upsample_scores  # torch: only when score maps are asked for

    s = reader.read(image_id, "scores", "keys")
    up = upsample_scores(s["scores"], (h, w)).numpy()
    for k, c in enumerate(s["keys"]):
        out[int(c)] = up[k]
    return out


def export_masks(*, shard_paths, records: list[mf.Record], out_dir, split: str, n_classes: int,
                 threshold: float | None = None, scores: bool = False) -> dict:
    """Write the label maps (and score maps) of the records found in the shards; returns counts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    with ShardSet(shard_paths) as shards:
        for r in progress(records, desc=f"export {split}", unit="img"):
            if r.image_id not in shards:
                missing.append(r.image_id)
                continue
            reader = shards.reader(r.image_id)
            labels, cams = _label_map(reader, r.image_id, threshold)
            bad = (labels >= n_classes) & (labels != IGNORE)
            if bad.any():
                reader.fail(r.image_id, f"label values {sorted(set(np.unique(labels[bad]).tolist()))[:5]} "
                                        f"outside 0..{n_classes - 1} and 255")
            write_label_png(out_dir / f"{r.image_id}.png", labels.astype(np.uint8))
            if scores:
                with atomic_path(out_dir / f"{r.image_id}.npy") as tmp, open(tmp, "wb") as f:
                    np.save(f, _full_scores(labels, cams, reader, r.image_id, n_classes, threshold))
            written.append(r)
    write_text(out_dir / f"{split}.txt", "".join(f"{r.image_id}\n" for r in written))
    write_text(out_dir / f"{split}_pairs.txt",
               "".join(f"{Path(r.image).resolve()} {(out_dir / f'{r.image_id}.png').resolve()}\n" for r in written))
    if missing:
        log.warning("%d image(s) of split %s have no output in the stage (skipped upstream): %s", len(missing), split,
                    ", ".join(missing[:5]))
    return {"written": len(written), "missing": missing}


def evaluate_mask_folder(*, folder, records: list[mf.Record], classes, split: str, out_path, problems_path,
                         stage: str | None = None) -> dict:
    """mIoU (and coverage, precision, miou_full) of a folder of PNG label maps on a split."""
    n = len(classes) + 1
    stage = stage or Path(folder).resolve().name
    scores = MaskScores(n)
    problems = ProblemReport(problems_path)
    for r in progress(records, desc=f"evaluate {folder}", unit="img"):
        try:
            gt = load_ground_truth(r, n)
            mask = read_folder_mask(folder, r.image_id, gt.shape, n)
        except ImageReadError as e:
            problems.add(r.image_id, Path(folder) / f"{r.image_id}.png", str(e))
            continue
        scores.add(gt, mask)
    if scores.n_images == 0:
        problems.write()
        raise ValueError(f"{folder}: no mask of split {split!r} could be evaluated (see {problems_path})")
    metrics = scores.metrics(stage, split, classes, len(problems), folder=str(Path(folder).resolve()))
    write_text(out_path, json.dumps(metrics, indent=1))
    problems.write()
    return metrics


def stage_threshold(results: Path, stage: str) -> float | None:
    """The background threshold the run chose for a CAM row named `stage` (its metrics'
    best_threshold), if any; None for a folder, whose row the name does not say."""
    if "/" in stage:
        return None
    path = Path(results) / "metrics" / f"{stage}.json"
    try:
        return json.loads(path.read_text()).get("best_threshold")
    except (OSError, ValueError):
        return None

