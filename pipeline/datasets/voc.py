"""PASCAL VOC 2012 in the official VOCdevkit layout.

root/JPEGImages/<id>.jpg, root/SegmentationClass[Aug]/<id>.png (palette PNGs whose indices
are the classes, 255 void), root/ImageSets/Segmentation/<split>.txt, and when present
root/Annotations/<id>.xml. Image-level labels come from a labels CSV, the XML object names,
or the classes present in the mask (`labels: auto` picks the first available, in that order).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..imageio import IGNORE, ImageReadError, read_label_map
from ..manifest import ManifestError, Record
from .common import labels_from_names, labels_from_values, read_labels_csv

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
           "train", "tvmonitor")


def mask_dir(cfg: dict) -> Path:
    root = Path(cfg["root"])
    if cfg["masks"] != "auto":
        return root / cfg["masks"]
    aug = root / "SegmentationClassAug"
    return aug if aug.is_dir() else root / "SegmentationClass"


def label_source(cfg: dict) -> str:
    if cfg["labels"] != "auto":
        return cfg["labels"]
    if cfg["labels_csv"]:
        return "csv"
    if (Path(cfg["root"]) / "Annotations").is_dir():
        return "xml"
    return "masks"


def split_ids(cfg: dict, split: str) -> tuple[list[str], Path]:
    root = Path(cfg["root"])
    if not root.is_dir():
        raise ManifestError(f"dataset.voc.root: {root} is not a folder")
    rel = cfg["split_files"].get(split, f"ImageSets/Segmentation/{split}.txt")
    path = root / rel
    try:
        ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        raise ManifestError(f"{path}: cannot read the image list of split {split!r}: {e}") from None
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: image ids are listed more than once")
    return ids, path


def xml_labels(path: Path) -> list[str]:
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as e:
        raise ManifestError(f"{path}: cannot read the annotation: {e}") from None
    return [(obj.findtext("name") or "").strip() for obj in tree.getroot().iter("object")]


def mask_labels(path: Path) -> list[int]:
    try:
        values = np.unique(read_label_map(path))
    except ImageReadError as e:
        raise ManifestError(f"labels from masks: {e}") from None
    return [int(v) for v in values if v not in (0, IGNORE)]


def manifest(cfg: dict, split: str) -> tuple[list[Record], str]:
    ids, list_file = split_ids(cfg, split)
    root = Path(cfg["root"])
    masks = mask_dir(cfg)
    source = label_source(cfg)
    csv_rows = read_labels_csv(cfg["labels_csv"], CLASSES) if source == "csv" else {}
    missing = [i for i in ids if not (root / "JPEGImages" / f"{i}.jpg").is_file()]
    if missing:
        raise ManifestError(f"{list_file}: {len(missing)} listed image(s) are not in {root / 'JPEGImages'} "
                            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    records = []
    for iid in ids:
        mask = masks / f"{iid}.png"
        if source == "csv":
            if iid not in csv_rows:
                raise ManifestError(f"{cfg['labels_csv']}: no row for image {iid!r} of split {split!r}")
            labels, names = csv_rows[iid].labels, csv_rows[iid].names
        elif source == "xml":
            xml = root / "Annotations" / f"{iid}.xml"
            labels, names = labels_from_names(xml_labels(xml), CLASSES, str(xml))
        else:
            if not mask.is_file():
                raise ManifestError(f"{mask}: missing, and labels are derived from the masks "
                                    "(give dataset.voc.labels_csv or Annotations to use images without masks)")
            labels, names = labels_from_values(mask_labels(mask), CLASSES, str(mask))
        records.append(Record(image_id=iid, image=str(root / "JPEGImages" / f"{iid}.jpg"),
                              labels=labels, label_names=names,
                              mask=str(mask) if mask.is_file() else ""))
    return records, f"dataset.voc ({list_file})"


def write_labels_csv(root, split: str, out_path) -> int:
    """Image-level labels of a split derived from its masks, as a labels CSV (read every mask
    once; afterwards `labels_csv` makes building the manifest fast)."""
    import csv

    from ..atomic import atomic_path

    cfg = {"root": str(root), "split_files": {}, "masks": "auto", "labels": "masks", "labels_csv": None}
    records, _ = manifest(cfg, split)
    with atomic_path(out_path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image_id", "split", "class_indices", "class_names"])
        for r in records:
            w.writerow([r.image_id, split, " ".join(map(str, r.labels)), " ".join(r.label_names)])
    return len(records)


def image_list(cfg: dict, split: str) -> list[Record]:
    """Records of a split's list (the VOC test list: ImageSets/Segmentation/test.txt) without
    labels or masks, for prediction; every listed JPEG must exist."""
    ids, path = split_ids(cfg, split)
    images = Path(cfg["root"]) / "JPEGImages"
    missing = [i for i in ids if not (images / f"{i}.jpg").is_file()]
    if missing:
        raise ManifestError(f"{path}: {len(missing)} listed image(s) not in {images}: {', '.join(missing[:5])}")
    return [Record(i, str(images / f"{i}.jpg"), ()) for i in ids]
