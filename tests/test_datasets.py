"""Dataset adapters: the VOC layout (on the real sample and on hand-made trees) and folders."""
import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.config import resolve
from pipeline.datasets import build_manifest, class_names
from pipeline.datasets.voc import CLASSES as VOC_CLASSES, write_labels_csv
from pipeline.imageio import read_label_map, write_label_png
from pipeline.manifest import ManifestError


def voc_cfg(root, **voc):
    return resolve({"dataset": {"name": "voc", "train_split": "train", "eval_split": "train",
                                "voc": {"root": str(root), **voc}}})["dataset"]


def sample_csv_labels(voc_root):
    with open(voc_root.parents[1] / "image_labels.csv") as f:
        return {r["image_id"]: tuple(int(v) for v in r["class_indices"].split()) for r in csv.DictReader(f)}


# ------------------------------------------------------------------ the real VOC sample

def test_voc_sample_labels_from_masks_match_the_csv(voc_root):
    records, left_out = build_manifest(voc_cfg(voc_root), "train")
    expected = sample_csv_labels(voc_root)
    assert len(records) == 330 and not left_out
    assert {r.image_id: r.labels for r in records} == expected
    r = records[0]
    assert r.image.endswith(f"JPEGImages/{r.image_id}.jpg") and r.mask.endswith(f"SegmentationClass/{r.image_id}.png")
    assert r.label_names == tuple(VOC_CLASSES[v - 1] for v in r.labels)


def test_voc_sample_labels_from_csv(voc_root):
    csv_path = voc_root.parents[1] / "image_labels.csv"
    records, _ = build_manifest(voc_cfg(voc_root, labels_csv=str(csv_path)), "train")
    assert {r.image_id: r.labels for r in records} == sample_csv_labels(voc_root)


def test_voc_sample_masks_are_palette_indices(voc_root):
    records, _ = build_manifest(voc_cfg(voc_root, labels_csv=str(voc_root.parents[1] / "image_labels.csv")), "train")
    mask = read_label_map(records[0].mask)
    assert set(np.unique(mask).tolist()) <= set(range(21)) | {255}
    assert (mask == 255).any()


def test_labels_csv_command_writes_what_the_masks_say(voc_root, tmp_path):
    n = write_labels_csv(voc_root, "train", tmp_path / "labels.csv")
    assert n == 330
    records, _ = build_manifest(voc_cfg(voc_root, labels_csv=str(tmp_path / "labels.csv")), "train")
    assert {r.image_id: r.labels for r in records} == sample_csv_labels(voc_root)


# ------------------------------------------------------------------ hand-made VOC trees

@pytest.fixture
def mini_voc(tmp_path):
    root = tmp_path / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation", "Annotations"):
        (root / d).mkdir(parents=True)
    ids = ["2008_000001", "2008_000002", "2008_000003"]
    objects = {"2008_000001": ["dog", "person", "dog"], "2008_000002": ["cat"], "2008_000003": ["tvmonitor"]}
    for i, iid in enumerate(ids):
        Image.new("RGB", (20, 16), (i * 40, 10, 10)).save(root / "JPEGImages" / f"{iid}.jpg")
        mask = np.zeros((16, 20), np.uint8)
        mask[2:8, 2:8] = VOC_CLASSES.index(objects[iid][0]) + 1
        write_label_png(root / "SegmentationClass" / f"{iid}.png", mask)
        names = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in objects[iid])
        (root / "Annotations" / f"{iid}.xml").write_text(
            f"<annotation><filename>{iid}.jpg</filename>{names}</annotation>")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[2] + "\n")
    return root


def test_xml_labels_are_the_object_names(mini_voc):
    ds = voc_cfg(mini_voc)
    records, _ = build_manifest(ds, "train")
    assert [r.labels for r in records] == [(12, 15), (8,)]  # dog + person (once), cat
    assert records[0].label_names == ("dog", "person")


def test_split_files_and_augmented_masks(mini_voc):
    (mini_voc / "lists").mkdir()
    (mini_voc / "lists" / "mine.txt").write_text("2008_000003\n2008_000001\n")
    shutil.copytree(mini_voc / "SegmentationClass", mini_voc / "SegmentationClassAug")
    records, _ = build_manifest(voc_cfg(mini_voc, split_files={"mine": "lists/mine.txt"}), "mine")
    assert [r.image_id for r in records] == ["2008_000003", "2008_000001"]
    assert all("SegmentationClassAug" in r.mask for r in records)


def test_missing_mask_is_kept_without_mask(mini_voc):
    (mini_voc / "SegmentationClass" / "2008_000002.png").unlink()
    records, _ = build_manifest(voc_cfg(mini_voc), "train")
    assert records[1].mask == "" and records[0].mask


def test_voc_listing_errors_name_the_file(mini_voc):
    with pytest.raises(ManifestError, match="test.txt"):
        build_manifest(voc_cfg(mini_voc), "test")
    (mini_voc / "JPEGImages" / "2008_000002.jpg").unlink()
    with pytest.raises(ManifestError, match=r"train.txt: 1 listed image\(s\) are not in .*2008_000002"):
        build_manifest(voc_cfg(mini_voc), "train")


def test_unknown_class_name_in_xml_is_an_error(mini_voc):
    (mini_voc / "Annotations" / "2008_000001.xml").write_text(
        "<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(ManifestError, match=r"2008_000001.xml: unknown class name 'unicorn'"):
        build_manifest(voc_cfg(mini_voc), "train")


def test_empty_split_is_an_error(mini_voc):
    (mini_voc / "ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(ManifestError, match="split 'empty' has no images"):
        build_manifest(voc_cfg(mini_voc), "empty")


def test_images_without_labels_follow_the_policy(mini_voc):
    (mini_voc / "Annotations" / "2008_000002.xml").write_text("<annotation></annotation>")
    records, left_out = build_manifest(voc_cfg(mini_voc), "train")
    assert [r.image_id for r in records] == ["2008_000001"]
    assert left_out == [("2008_000002", "no image-level labels")]
    ds = voc_cfg(mini_voc)
    ds["on_empty_labels"] = "keep"
    assert len(build_manifest(ds, "train")[0]) == 2
    ds["on_empty_labels"] = "error"
    with pytest.raises(ManifestError, match="2008_000002"):
        build_manifest(ds, "train")


# ------------------------------------------------------------------ folder datasets

@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    for iid in ("a", "b", "c"):
        Image.new("RGB", (12, 10)).save(images / f"{iid}.png")
    (tmp_path / "labels.csv").write_text("image_id,class_names,split\na,cat dog,train\nb,dog,val\nc,cat,\n")
    return tmp_path


def folder_cfg(root, **extra):
    return resolve({"dataset": {"name": "folder", "folder": {
        "images": str(root / "imgs"), "labels_csv": str(root / "labels.csv"), "classes": ["cat", "dog"],
        **extra}}})["dataset"]


def test_folder_splits_and_labels(folder):
    ds = folder_cfg(folder)
    assert class_names(ds) == ("cat", "dog")
    train, _ = build_manifest(ds, "train")
    val, _ = build_manifest(ds, "val")
    assert [(r.image_id, r.labels) for r in train] == [("a", (1, 2)), ("c", (1,))]  # c has no split: in every split
    assert [r.image_id for r in val] == ["b", "c"]
    assert all(r.mask == "" for r in train)


def test_folder_masks_are_optional(folder):
    (folder / "masks").mkdir()
    write_label_png(folder / "masks" / "a.png", np.zeros((10, 12), np.uint8))
    train, _ = build_manifest(folder_cfg(folder, masks=str(folder / "masks")), "train")
    assert train[0].mask.endswith("a.png") and train[1].mask == ""


def test_folder_errors_name_the_csv_and_line(folder):
    (folder / "labels.csv").write_text("image_id,class_names\na,cat horse\n")
    with pytest.raises(ManifestError, match=r"labels.csv, line 2: unknown class name 'horse'"):
        build_manifest(folder_cfg(folder), "train")
    (folder / "labels.csv").write_text("image_id,class_names\nzzz,cat\n")
    with pytest.raises(ManifestError, match=r"not found in .*imgs \(zzz\)"):
        build_manifest(folder_cfg(folder), "train")
    (folder / "labels.csv").write_text("id,labels\na,cat\n")
    with pytest.raises(ManifestError, match="needs the columns image_id and class_names"):
        build_manifest(folder_cfg(folder), "train")
    (folder / "labels.csv").write_text("image_id,class_names,split\na,cat,train\n")
    with pytest.raises(ManifestError, match="split 'val' has no images"):
        build_manifest(folder_cfg(folder), "val")


def test_image_ids_that_cannot_name_files_or_groups_are_errors(folder):
    (folder / "imgs" / "sub").mkdir()
    Image.new("RGB", (12, 10)).save(folder / "imgs" / "sub" / "d.png")
    (folder / "labels.csv").write_text("image_id,class_names,image\nsub/d,cat,sub/d.png\n")
    with pytest.raises(ManifestError, match=r"image ids must not .* \['sub/d'\]"):
        build_manifest(folder_cfg(folder), "train")


def test_predict_manifest_from_a_voc_list_or_a_folder_without_labels(tmp_path):
    from pipeline.datasets import predict_manifest
    from pipeline.manifest import ManifestError

    root = tmp_path / "VOC2012"
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for i in ("2008_000001", "2008_000002"):
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
    (root / "ImageSets/Segmentation/test.txt").write_text("2008_000001\n2008_000002\n")
    ds = {"name": "voc", "train_split": "train", "eval_split": "val",
          "voc": {"root": str(root), "split_files": {}, "masks": "auto", "labels": "auto", "labels_csv": None}}
    split, records = predict_manifest(ds, {"images": None, "split": "test"})
    assert split == "test" and [r.image_id for r in records] == ["2008_000001", "2008_000002"]
    assert all(r.labels == () and r.mask == "" for r in records)
    (root / "ImageSets/Segmentation/test.txt").write_text("2008_000001\n2008_000003\n")
    with pytest.raises(ManifestError, match=r"test.txt: 1 listed image\(s\) not in .*JPEGImages: 2008_000003"):
        predict_manifest(ds, {"images": None, "split": "test"})
    with pytest.raises(ManifestError, match="is the training or evaluation split"):
        predict_manifest(ds, {"images": None, "split": "val"})
    split, records = predict_manifest({"name": "synthetic"}, {"images": str(root / "JPEGImages"), "split": None})
    assert split == "predict" and len(records) == 2 and records[0].image.endswith("2008_000001.jpg")
    with pytest.raises(ManifestError, match="predict.images: no image"):
        predict_manifest({"name": "synthetic"}, {"images": str(root / "ImageSets"), "split": None})
    assert predict_manifest(ds, {"images": None, "split": None}) is None
