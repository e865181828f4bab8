"""Masks out of and into the pipeline as folders of PNGs (pipeline/mask_folders.py, the CLI)."""
import json

import numpy as np
import pytest
from PIL import Image

from pipeline import manifest as mf
from pipeline.__main__ import main
from pipeline.artifacts import ArtifactWriter
from pipeline.imageio import read_label_map, write_image, write_label_png
from pipeline.mask_folders import evaluate_mask_folder, export_masks, stage_shards
from pipeline.problems import read_report

CLASSES = ["cat", "dog"]


def _run(tmp_path, n=4, h=6, w=8):
    """A tiny run folder: split val's manifest with images and masks, a mask stage `rw` (with
    score maps) and a CAM stage `cam`, each as one shard."""
    rng = np.random.default_rng(0)
    res = tmp_path / "results"
    (res / "manifest").mkdir(parents=True)
    records, gts = [], {}
    for i in range(n):
        iid = f"im{i}"
        write_image(tmp_path / f"{iid}.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        gt = rng.integers(0, 3, (h, w)).astype(np.uint8)
        gt[0, 0] = 255
        write_label_png(tmp_path / f"{iid}_gt.png", gt)
        gts[iid] = gt
        records.append(mf.Record(iid, str(tmp_path / f"{iid}.png"), (1, 2), ("cat", "dog"),
                                 str(tmp_path / f"{iid}_gt.png")))
    mf.write_tsv(records, res / "manifest" / "val.tsv")
    for stage in ("rw", "cam"):
        (res / stage / "val").mkdir(parents=True)
        with ArtifactWriter(res / stage / "val" / "shard0.h5", stage=stage, split="val", shard="shard0",
                            classes=CLASSES, params={}, code_hash="x") as wr:
            for iid in list(gts)[:-1]:  # the last image was skipped upstream
                if stage == "rw":
                    scores = rng.random((3, h // 2, w // 2)).astype(np.float16)
                    wr.add(iid, mask=np.where(gts[iid] == 255, 0, gts[iid]).astype(np.uint8), scores=scores,
                           keys=np.array([0, 1, 2]))
                else:
                    wr.add(iid, cams=rng.random((1, h, w)).astype(np.float16), keys=np.array([2]))
    return res, records, gts


def test_export_writes_palette_pngs_list_files_and_score_maps(tmp_path):
    res, records, gts = _run(tmp_path)
    out = tmp_path / "out"
    done = export_masks(shard_paths=stage_shards(res, "rw", "val"), records=records, out_dir=out, split="val",
                        n_classes=3, scores=True)
    assert done == {"written": 3, "missing": ["im3"]}
    for iid in ("im0", "im1", "im2"):
        png = Image.open(out / f"{iid}.png")
        assert png.mode == "P" and png.size == (8, 6)
        np.testing.assert_array_equal(read_label_map(out / f"{iid}.png"), np.where(gts[iid] == 255, 0, gts[iid]))
        scores = np.load(out / f"{iid}.npy")
        assert scores.shape == (3, 6, 8) and scores.dtype == np.float16
    assert (out / "val.txt").read_text().split() == ["im0", "im1", "im2"]
    pairs = [line.split() for line in (out / "val_pairs.txt").read_text().splitlines()]
    assert pairs[0] == [str((tmp_path / "im0.png").resolve()), str((out / "im0.png").resolve())]


def test_export_of_a_cam_stage_needs_its_threshold_and_labels_at_it(tmp_path):
    res, records, _ = _run(tmp_path)
    with pytest.raises(ValueError, match="background threshold"):
        export_masks(shard_paths=stage_shards(res, "cam", "val"), records=records, out_dir=tmp_path / "o", split="val",
                     n_classes=3)
    export_masks(shard_paths=stage_shards(res, "cam", "val"), records=records, out_dir=tmp_path / "o", split="val",
                 n_classes=3, threshold=0.5, scores=True)
    labels, scores = read_label_map(tmp_path / "o/im0.png"), np.load(tmp_path / "o/im0.npy")
    assert set(np.unique(labels)) <= {0, 2}
    np.testing.assert_array_equal(labels == 2, scores[2] > 0.5)
    assert np.all(scores[0] == np.float16(0.5)) and np.all(scores[1] == 0)  # background = threshold; no dog map


def test_unknown_stage_names_the_stages_there_are(tmp_path):
    res, _, _ = _run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"stage 'rw_crf'.*cam, rw"):
        stage_shards(res, "rw_crf", "val")


def test_evaluate_folder_equals_the_confusion_by_hand_and_lists_bad_masks(tmp_path):
    res, records, gts = _run(tmp_path)
    folder = tmp_path / "masks"
    folder.mkdir()
    write_label_png(folder / "im0.png", gts["im0"])  # perfect
    pred = gts["im1"].copy()
    pred[1, :] = 255  # one undecided row: left out of the confusion, lowers the coverage
    write_label_png(folder / "im1.png", pred)
    write_label_png(folder / "im2.png", np.zeros((5, 8), np.uint8))  # wrong size
    (folder / "im3.png").write_bytes(b"not a png")
    m = evaluate_mask_folder(folder=folder, records=records, classes=CLASSES, split="val",
                             out_path=tmp_path / "m.json", problems_path=tmp_path / "p.tsv")
    assert m["n_images"] == 2 and m["n_skipped"] == 2 and m["miou"] == pytest.approx(1.0)
    labelled = int((gts["im0"] != 255).sum() + (gts["im1"] != 255).sum())
    undecided = int(((pred == 255) & (gts["im1"] != 255)).sum())
    assert m["coverage"] == pytest.approx((labelled - undecided) / labelled) and m["precision"] == 1.0
    problems = {r[0]: r[2] for r in read_report(tmp_path / "p.tsv")}
    assert set(problems) == {"im2", "im3"} and "differs from the image's (6, 8)" in problems["im2"]
    assert json.loads((tmp_path / "m.json").read_text())["miou"] == m["miou"]


def test_cli_export_then_evaluate_gives_the_masks_score(tmp_path, capsys, monkeypatch):
    res, _, gts = _run(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("dataset: {name: folder, folder: {classes: [cat, dog], images: x, labels_csv: y}}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["export-masks", "rw", "val", "out"]) == 0  # the classes the artifacts name
    assert "3 masks of rw (val) written to out; 1 image(s) without output" in capsys.readouterr().out
    assert main(["evaluate-masks", "out", "--split", "val", "--configfile", str(config)]) == 0
    printed = capsys.readouterr().out
    m = json.loads((tmp_path / "out/val.metrics.json").read_text())
    assert m["stage"] == "out" and m["n_images"] == 3 and m["n_skipped"] == 1 and f"{100 * m['miou']:.1f}" in printed
    assert [r[0] for r in read_report(tmp_path / "out/val.problems.tsv")] == ["im3"]
    assert main(["evaluate-masks", "nowhere", "--split", "val", "--configfile", str(config)]) == 1
    assert "nowhere: no such folder of masks" in capsys.readouterr().err
