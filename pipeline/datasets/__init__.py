"""Dataset adapters: turn a dataset (synthetic, VOC layout, or a folder) into manifests.

`build_manifest(dataset_cfg, split)` returns the split's records and the images it left
out (with the reason); listing errors raise ManifestError before any job runs.
"""
from __future__ import annotations

from ..manifest import ManifestError, Record
from . import folder, synthetic, voc

SYNTHETIC_ROOT = "results/data/synthetic"


def class_names(ds: dict) -> tuple[str, ...]:
    """Object class names; class value i (in masks and labels) is class_names[i - 1]."""
    if ds["name"] == "synthetic":
        return synthetic.CLASSES
    if ds["name"] == "voc":
        return voc.CLASSES
    return tuple(ds["folder"]["classes"])


def splits(ds: dict) -> list[str]:
    """The splits a run needs: the training split and the evaluation split."""
    return list(dict.fromkeys([ds["train_split"], ds["eval_split"]]))


PREDICT_SPLIT = "predict"  # the split name of predict.images


def predict_manifest(ds: dict, predict: dict) -> tuple[str, list[Record]] | None:
    """(split name, records without labels) of the images to predict on (config `predict`):
    a folder of images (split `predict`) or a split's image list of a VOC dataset; None when
    nothing is asked for."""
    if predict["images"]:
        return PREDICT_SPLIT, folder.image_folder(predict["images"])
    split = predict["split"]
    if not split:
        return None
    if split in splits(ds):
        raise ManifestError(f"predict.split: {split!r} is the training or evaluation split, predicted already")
    if ds["name"] != "voc":
        raise ManifestError(f"predict.split names a split of a VOC dataset (dataset.name is {ds['name']}); "
                            "use predict.images for a folder of images")
    return split, voc.image_list(ds["voc"], split)


def build_manifest(ds: dict, split: str) -> tuple[list[Record], list[tuple[str, str]]]:
    """Records of one split, and (image_id, reason) for each image left out."""
    name = ds["name"]
    if name == "synthetic":
        records = synthetic.manifest(ds["synthetic"], split, synthetic_root(split))
        source = "dataset.synthetic"
    elif name == "voc":
        records, source = voc.manifest(ds["voc"], split)
    else:
        records, source = folder.manifest(ds["folder"], split)
    bad = [r.image_id for r in records if not r.image_id or r.image_id.strip() != r.image_id
           or any(c in r.image_id for c in "/\t\n") or r.image_id in (".", "..")]
    if bad:
        raise ManifestError(f"{source}: image ids must not be empty, contain '/', tabs or line breaks, "
                            f"or start or end with spaces: {bad[:5]}")
    records, left_out = apply_empty_label_policy(records, ds["on_empty_labels"], source)
    if not records:
        raise ManifestError(f"{source}: split {split!r} has no images"
                            + (f" ({len(left_out)} left out: {left_out[0][1]})" if left_out else ""))
    return records, left_out


def apply_empty_label_policy(records, policy, source):
    empty = [r for r in records if not r.labels]
    if not empty:
        return records, []
    if policy == "error":
        ids = ", ".join(r.image_id for r in empty[:5])
        raise ManifestError(f"{source}: {len(empty)} image(s) have no image-level labels ({ids}"
                            f"{', ...' if len(empty) > 5 else ''}); set dataset.on_empty_labels "
                            "to skip or keep to accept them")
    if policy == "keep":
        return records, []
    return [r for r in records if r.labels], [(r.image_id, "no image-level labels") for r in empty]


def synthetic_root(split: str) -> str:
    return f"{SYNTHETIC_ROOT}/{split}"


def generated_data(ds: dict, split: str) -> list[str]:
    """The folder a rule generates for a split (synthetic data), or [] when the data exists."""
    return [synthetic_root(split)] if ds["name"] == "synthetic" else []
