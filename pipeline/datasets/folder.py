"""Users' own data: a folder of images plus a labels CSV; masks optional."""
from __future__ import annotations

import os
from pathlib import Path

from ..manifest import ManifestError, Record
from .common import read_labels_csv

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def _index_folder(folder: Path, key: str = "dataset.folder.images") -> dict[str, str]:
    """Image file name by image id (the file name without its extension), one listing."""
    found = {}
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        raise ManifestError(f"{key}: cannot list {folder}: {e}") from None
    for entry in sorted(entries, key=lambda e: e.name):
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
            found.setdefault(stem, entry.name)
    return found


def manifest(cfg: dict, split: str) -> tuple[list[Record], str]:
    images = Path(cfg["images"])
    classes = tuple(cfg["classes"])
    rows = read_labels_csv(cfg["labels_csv"], classes)
    files = _index_folder(images)
    masks = Path(cfg["masks"]) if cfg["masks"] else None
    records, missing = [], []
    for iid, row in rows.items():
        if row.split and row.split != split:
            continue
        name = row.image or files.get(iid)
        if name is None or not (images / name).is_file():
            missing.append(iid)
            continue
        mask = masks / f"{iid}.png" if masks else None
        records.append(Record(image_id=iid, image=str(images / name), labels=row.labels, label_names=row.names,
                              mask=str(mask) if mask is not None and mask.is_file() else ""))
    if missing:
        raise ManifestError(f"{cfg['labels_csv']}: {len(missing)} image(s) not found in {images} "
                            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    return records, f"dataset.folder ({cfg['labels_csv']})"


def image_folder(folder, key: str = "predict.images") -> list[Record]:
    """Records of every image in a folder, without labels or masks (images to predict on)."""
    folder = Path(folder)
    files = _index_folder(folder, key)
    if not files:
        raise ManifestError(f"{key}: no image ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return [Record(iid, str(folder / name), ()) for iid, name in files.items()]
