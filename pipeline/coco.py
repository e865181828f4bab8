"""Instances as COCO JSON: PRM's instance masks (or any artifact with `instance_masks`,
`instance_classes`, `instance_scores`) in the layout pycocotools reads.

The file is a COCO dataset file (`images`, `categories`, `annotations`) whose annotations also
carry `score`, so `COCO(path)` loads it and `coco.loadRes(path_or_list)` takes its annotations
as detections. Masks are uncompressed RLE (column-major run lengths starting with a
background run, as COCO's own crowd annotations), `bbox` is [x, y, width, height], category
ids are the class values 1..C, image ids count from 1 in manifest order and `file_name` /
`image_key` name the image.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import manifest as mf
from .artifacts import ShardSet
from .atomic import write_text


def rle_encode(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE of a binary [H, W] mask: run lengths in column-major order, the
    first run counting zeros (0 when the first pixel is set)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def bbox(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def coco_dict(images: list[dict], annotations: list[dict], classes) -> dict:
    return {"info": {"description": "instances exported by the pipeline (python -m pipeline export-instances)"},
            "images": images, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(classes)],
            "annotations": annotations}


def export_instances(*, shard_paths, records: list[mf.Record], classes, out_path) -> dict:
    """Write the instances of the records found in the shards as COCO JSON; returns counts."""
    images, annotations = [], []
    with ShardSet(shard_paths) as shards:
        for r in records:
            if r.image_id not in shards:
                continue
            reader = shards.reader(r.image_id)
            d = reader.read(r.image_id, "instance_masks", "instance_classes", "instance_scores")
            masks = d["instance_masks"]
            h, w = masks.shape[1:] if masks.ndim == 3 else reader.read(r.image_id, "mask")["mask"].shape
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": Path(r.image).name, "image_key": r.image_id,
                           "height": int(h), "width": int(w)})
            for m, c, s in zip(masks, d["instance_classes"], d["instance_scores"]):
                if not 1 <= int(c) <= len(classes):
                    reader.fail(r.image_id, f"instance class {int(c)} outside 1..{len(classes)}")
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c),
                                    "segmentation": rle_encode(m), "area": float(m.astype(bool).sum()),
                                    "bbox": bbox(m), "iscrowd": 0, "score": float(s)})
    write_text(out_path, json.dumps(coco_dict(images, annotations, classes)))
    return {"images": len(images), "instances": len(annotations)}
