import numpy as np
import pytest

from pipeline.evaluate import (ThresholdSweep, cam_labels, confusion_matrix, iou_per_class, mean_iou,
                               threshold_grid)


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    conf = confusion_matrix(gt, pred, 3)
    # rows: truth, cols: prediction; the 255 pixel is ignored
    np.testing.assert_array_equal(conf, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])


def test_iou_and_miou_by_hand():
    conf = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    # class 0: 1 / (1+1+0) ; class 1: 1 / (1+1+1) ; class 2: 1 / (1+1+0)
    np.testing.assert_allclose(iou_per_class(conf), [1 / 2, 1 / 3, 1 / 2])
    assert mean_iou(conf) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)


def test_absent_class_is_left_out_of_the_mean():
    conf = np.array([[3, 1, 0], [1, 5, 0], [0, 0, 0]])
    iou = iou_per_class(conf)
    assert np.isnan(iou[2])
    assert mean_iou(conf) == pytest.approx((3 / 5 + 5 / 7) / 2)


def test_one_matrix_over_the_split_is_not_a_mean_of_images():
    gt1, p1 = np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]])
    gt2, p2 = np.array([[1, 0]]), np.array([[0, 0]])
    conf = confusion_matrix(gt1, p1, 2) + confusion_matrix(gt2, p2, 2)
    np.testing.assert_array_equal(conf, [[1, 0], [1, 4]])
    assert mean_iou(conf) == pytest.approx((1 / 2 + 4 / 5) / 2)


def test_out_of_range_labels_raise():
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.array([3]), np.array([0]), 3)


def test_cam_labels_by_hand():
    cams = np.array([[[0.9, 0.1], [0.5, 0.0]], [[0.2, 0.3], [0.6, 0.0]]], np.float32)
    keys = np.array([4, 7])
    np.testing.assert_array_equal(cam_labels(cams, keys, 0.25), [[4, 7], [7, 0]])
    np.testing.assert_array_equal(cam_labels(np.zeros((0, 2, 2)), np.zeros(0), 0.1), np.zeros((2, 2)))


def test_threshold_sweep_equals_brute_force():
    rng = np.random.default_rng(0)
    n, grid = 5, threshold_grid({"min": 0.0, "max": 0.95, "step": 0.05})
    sweep = ThresholdSweep(n, grid)
    brute = np.zeros((len(grid), n, n), np.int64)
    for _ in range(6):
        h, w = rng.integers(5, 12, 2)
        keys = np.sort(rng.choice(np.arange(1, n), rng.integers(0, 3), replace=False))
        cams = rng.random((len(keys), h, w)).astype(np.float16)
        cams[:, 0, 0] = 0.25  # exactly on a threshold: background at 0.25, foreground below
        gt = rng.integers(0, n, (h, w)).astype(np.uint8)
        gt[rng.random((h, w)) < 0.1] = 255
        sweep.add(gt, cams, keys)
        for k, t in enumerate(grid):
            brute[k] += confusion_matrix(gt, cam_labels(cams.astype(np.float32), keys, t), n)
    for k in range(len(grid)):
        np.testing.assert_array_equal(sweep.confusion(k), brute[k])
    miou, best = sweep.curve()
    assert miou == [mean_iou(b) for b in brute]
    assert best == int(np.nanargmax(miou)) and miou[best] == max(miou)
    assert [row["threshold"] for row in sweep.table(miou)] == grid.tolist()


def test_threshold_sweep_curve_names_a_sweep_with_nothing_to_score():
    sweep = ThresholdSweep(3, [0.1, 0.2])
    sweep.add(np.full((2, 2), 255, np.uint8), np.ones((1, 2, 2), np.float32), np.array([1]))
    with pytest.raises(ValueError, match="no labelled ground-truth pixel"):
        sweep.curve()


def test_threshold_grid():
    np.testing.assert_allclose(threshold_grid({"min": 0.1, "max": 0.3, "step": 0.1}), [0.1, 0.2, 0.3])
    assert len(threshold_grid({"min": 0.0, "max": 0.95, "step": 0.01})) == 96


def test_mask_evaluation_counts_decided_pixels_only_and_reports_precision_and_coverage(tmp_path):
    import json

    from pipeline.artifacts import ArtifactWriter
    from pipeline.evaluate import evaluate_masks
    from pipeline.imageio import write_label_png
    from pipeline.manifest import Record, write_tsv

    gt = np.array([[0, 0, 1, 1], [0, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 255, 1, 2], [255, 2, 255, 1]], np.uint8)
    write_label_png(tmp_path / "a.png", gt)
    write_tsv([Record("a", str(tmp_path / "a.jpg"), (1, 2), mask=str(tmp_path / "a.png")),
               Record("b", str(tmp_path / "b.jpg"), (1,), mask=str(tmp_path / "missing.png"))], tmp_path / "m.tsv")
    with ArtifactWriter(tmp_path / "s.h5", stage="affinity_labels", split="train", shard="s0", classes=["x", "y"],
                        params={}, code_hash="h") as w:
        w.add("a", mask=pred)
        w.add("b", mask=np.zeros((2, 4), np.uint8))
    m = evaluate_masks(manifest_paths=[tmp_path / "m.tsv"], mask_paths=[tmp_path / "s.h5"], classes=["x", "y"],
                       split="train", stage="affinity_labels", artifact_stage="affinity_labels",
                       out_path=tmp_path / "out.json", problems_path=tmp_path / "p.tsv")
    # 7 labelled pixels; decided among them: (0,0) 0->0, (0,2) 1->1, (0,3) 1->2, (1,1) 2->2
    np.testing.assert_array_equal(m["confusion"], [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    assert m["precision"] == pytest.approx(3 / 4) and m["coverage"] == pytest.approx(4 / 7)
    assert m["miou"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert m["n_images"] == 1 and m["n_skipped"] == 1  # b's mask file is missing: reported, not fatal
    assert json.loads((tmp_path / "out.json").read_text())["coverage"] == pytest.approx(4 / 7)
    assert "missing.png" in (tmp_path / "p.tsv").read_text()
    # whole images: undecided as background, gt 0 0 1 1 / 0 2 2 against 0 0 1 2 / 0 2 0
    full = {"background": 3 / 4, "x": 1 / 2, "y": 1 / 3}
    assert m["per_class_iou_full"] == pytest.approx(full) and m["miou_full"] == pytest.approx(sum(full.values()) / 3)
    # the results table shows the whole-image figure, the decided-pixel one beside it
    from pipeline.summary import format_table, write_summary

    write_summary([tmp_path / "out.json"], tmp_path / "summary.tsv", {"affinity_labels": True})
    row = dict(zip(*(line.split("\t") for line in (tmp_path / "summary.tsv").read_text().splitlines())))
    assert float(row["miou"]) == pytest.approx(m["miou_full"], abs=1e-4)
    assert float(row["miou_decided"]) == pytest.approx(m["miou"], abs=1e-4)
    assert float(row["iou_background"]) == pytest.approx(0.75) and row["image_labels"] == "yes"
    table = format_table(tmp_path / "summary.tsv")
    assert "undecided pixels count as background in miou" in table and " 52.8 " in table and " 66.7 " in table
    header, line = table.splitlines()[:2]
    assert header.split()[-3:] == ["image_labels", "n_images", "n_skipped"] and line.split()[-3:] == ["yes", "1", "1"]
    assert "compare yes with yes" in table


def test_agreement_scores_a_segmenter_against_its_pseudo_masks_not_the_ground_truth(tmp_path):
    from pipeline.artifacts import ArtifactError, ArtifactWriter
    from pipeline.evaluate import evaluate_agreement
    from pipeline.manifest import Record, write_tsv

    # no ground-truth file exists: the pseudo masks stand in for it, their undecided pixels left out
    write_tsv([Record(i, str(tmp_path / f"{i}.jpg"), (1,), mask=str(tmp_path / "absent.png")) for i in "abc"],
              tmp_path / "m.tsv")
    source = np.array([[0, 0, 1, 255], [0, 2, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 2], [0, 2, 2, 0]], np.uint8)

    def write(path, stage, masks):
        with ArtifactWriter(path, stage=stage, split="train", shard="s0", classes=["x", "y"], params={},
                            code_hash="h") as w:
            for image_id, mask in masks.items():
                w.add(image_id, mask=mask)

    write(tmp_path / "seg.h5", "deeplab_aspp", {"a": pred, "c": np.zeros((3, 3), np.uint8)})
    write(tmp_path / "rw.h5", "rw", {"a": source, "b": source, "c": source})
    kwargs = dict(manifest_paths=[tmp_path / "m.tsv"], mask_paths=[tmp_path / "seg.h5"],
                  source_paths=[tmp_path / "rw.h5"], classes=["x", "y"], split="train", stage="deeplab_aspp",
                  source_stage="rw", out_path=tmp_path / "out.json", problems_path=tmp_path / "p.tsv")
    m = evaluate_agreement(**kwargs)
    # 7 decided pixels of the pseudo mask: 0 -> 0 0 1 (twice 0), 1 -> 1, 2 -> 2 2 0
    np.testing.assert_array_equal(m["confusion"], [[2, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert m["miou"] == pytest.approx((2 / 4 + 1 / 2 + 2 / 3) / 3) and m["reference"] == "rw"
    assert m["n_images"] == 1 and m["n_skipped"] == 2  # b has no prediction, c's sizes differ: reported
    problems = (tmp_path / "p.tsv").read_text()
    assert "no deeplab_aspp mask" in problems and "differ in size" in problems
    write(tmp_path / "seg.h5", "deeplab_aspp", {"a": np.full((2, 4), 7, np.uint8)})
    with pytest.raises(ArtifactError, match=r"seg.h5: image a: deeplab_aspp mask values \[7\]"):
        evaluate_agreement(**kwargs)
    write(tmp_path / "seg.h5", "deeplab_aspp", {"a": pred})
    write(tmp_path / "rw.h5", "rw", {"a": np.full((2, 4), 255, np.uint8)})
    with pytest.raises(ValueError, match="every rw mask pixel of split 'train' is 255"):
        evaluate_agreement(**kwargs)


def test_cam_rows_apply_the_threshold_chosen_on_the_training_split(tmp_path):
    """The papers' protocol: the background threshold best on the training split's CAMs is the
    one reported on the evaluation split; that split's own best stays beside it, for reference."""
    import json

    from pipeline.artifacts import ArtifactWriter
    from pipeline.evaluate import evaluate_cams
    from pipeline.imageio import write_label_png
    from pipeline.manifest import Record, write_tsv

    gt = np.array([[0, 0, 1, 1]], np.uint8)
    cams = np.array([[[0.1, 0.3, 0.5, 0.9]]], np.float32)  # class 1's CAM; best thresholds 0.3 .. 0.49
    write_label_png(tmp_path / "a.png", gt)
    write_tsv([Record("a", str(tmp_path / "a.jpg"), (1,), mask=str(tmp_path / "a.png"))], tmp_path / "m.tsv")
    with ArtifactWriter(tmp_path / "c.h5", stage="cam", split="val", shard="s0", classes=["x"], params={},
                        code_hash="h") as w:
        w.add("a", cams=cams, keys=np.array([1], np.uint8))
    grid = {"min": 0.0, "max": 0.95, "step": 0.05}
    common = dict(manifest_paths=[tmp_path / "m.tsv"], cam_paths=[tmp_path / "c.h5"], classes=["x"], thresholds=grid,
                  split="val", stage="cam", problems_path=tmp_path / "p.tsv")
    own = evaluate_cams(**common, out_path=tmp_path / "own.json")
    assert own["threshold_from"] == "val" and own["miou"] == 1.0 and own["split_best_miou"] == 1.0
    (tmp_path / "train.json").write_text(json.dumps({"split": "train", "best_threshold": 0.6}))
    fair = evaluate_cams(**common, out_path=tmp_path / "fair.json", chosen_on=tmp_path / "train.json")
    # at 0.6 the pixel of CAM 0.5 turns background: 3 of 4 right
    assert fair["threshold_from"] == "train" and fair["best_threshold"] == pytest.approx(0.6)
    assert fair["miou"] == pytest.approx((2 / 3 + 1 / 2) / 2) and fair["split_best_miou"] == 1.0
    assert json.loads((tmp_path / "fair.json").read_text())["miou"] == fair["miou"]
    (tmp_path / "nothing.json").write_text(json.dumps({"split": "train"}))
    with pytest.raises(ValueError, match="holds no best background threshold"):
        evaluate_cams(**common, out_path=tmp_path / "x.json", chosen_on=tmp_path / "nothing.json")


def test_cam_labels_agree_with_the_sweep_on_float16_cams_at_the_threshold():
    """A float16 CAM value just above a threshold (0.6 is 0.60009765625 in float16) is foreground
    in both, as the sweep decides in float64."""
    cams = np.array([[[0.6, 0.59, 0.7]]], np.float16)
    keys = np.array([1])
    labels = cam_labels(cams, keys, 0.6)
    sweep = ThresholdSweep(2, [0.6])
    gt = np.array([[1, 0, 1]], np.uint8)
    sweep.add(gt, cams, keys)
    assert labels.tolist() == [[1, 0, 1]]
    np.testing.assert_array_equal(sweep.confusion(0), confusion_matrix(gt, labels, 2))
