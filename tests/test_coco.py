"""PRM's instances as COCO JSON, read back with pycocotools (pipeline/coco.py)."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_util  # envs/test.txt
from pycocotools.coco import COCO

from pipeline import manifest as mf
from pipeline.__main__ import main
from pipeline.artifacts import ArtifactWriter
from pipeline.coco import bbox, rle_encode


@pytest.mark.parametrize("first", [False, True])
def test_rle_decodes_to_the_mask_with_pycocotools(first):
    rng = np.random.default_rng(1)
    m = rng.random((7, 5)) > 0.6
    m[0, 0] = first
    rle = rle_encode(m)
    assert (rle["counts"][0] == 0) == first and sum(rle["counts"]) == m.size
    decoded = mask_util.decode(mask_util.frPyObjects(rle, 7, 5))
    np.testing.assert_array_equal(decoded, m)
    assert bbox(np.pad(np.ones((2, 3)), ((1, 0), (4, 0)))) == [4.0, 1.0, 3.0, 2.0]


def test_export_instances_loads_in_pycocotools_with_the_right_counts(tmp_path):
    rng = np.random.default_rng(0)
    res = tmp_path / "results"
    (res / "manifest").mkdir(parents=True)
    records, truth = [], {}
    (res / "prm/instances/val").mkdir(parents=True)
    with ArtifactWriter(res / "prm/instances/val/shard0.h5", stage="prm", split="val", shard="shard0",
                        classes=["cat", "dog"], params={}, code_hash="x") as wr:
        for i, n in enumerate([2, 0, 3]):
            iid = f"im{i}"
            records.append(mf.Record(iid, f"/data/{iid}.jpg", (1,), ("cat",)))
            masks = (rng.random((n, 6, 9)) > 0.5).astype(np.uint8)
            classes, scores = rng.integers(1, 3, n), rng.random(n).astype(np.float32)
            truth[iid] = (masks, classes, scores)
            wr.add(iid, mask=np.zeros((6, 9), np.uint8), instance_masks=masks, instance_classes=classes,
                   instance_scores=scores)
    mf.write_tsv(records, res / "manifest/val.tsv")
    config = tmp_path / "c.yaml"
    config.write_text("dataset: {name: folder, folder: {classes: [cat, dog], images: x, labels_csv: y}}\n")
    out = tmp_path / "prm.json"
    assert main(["export-instances", "val", str(out), "--results", str(res), "--configfile", str(config)]) == 0
    coco = COCO(str(out))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 5
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog"]
    for img in coco.loadImgs(coco.getImgIds()):
        masks, classes, scores = truth[img["image_key"]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert img["file_name"] == f"{img['image_key']}.jpg" and (img["height"], img["width"]) == (6, 9)
        assert [a["category_id"] for a in anns] == classes.tolist()
        np.testing.assert_allclose([a["score"] for a in anns], scores, rtol=1e-6)
        for a, m in zip(anns, masks):
            np.testing.assert_array_equal(coco.annToMask(a), m)
            assert a["area"] == m.sum()
    assert len(coco.loadRes(json.loads(out.read_text())["annotations"]).getAnnIds()) == 5  # as detections
