import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from pipeline.artifacts import ArtifactWriter
from pipeline.imageio import read_image, write_image, write_label_png


@pytest.fixture
def artifact(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    write_image(tmp_path / "img.png", rgb)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 10:40] = 2
    mask[9, 10:40] = 255
    write_label_png(tmp_path / "mask.png", mask)
    cams = np.zeros((2, 40, 60), np.float16)
    cams[0, 10:30, 10:40] = 1.0
    cams[1, 0:5, 0:5] = 0.5
    with ArtifactWriter(tmp_path / "a.h5", stage="cam", split="val", shard="shard00", classes=["cat", "dog", "cow"],
                        params={"scales": [1.0]}, code_hash="abc") as w:
        w.add("img", {"image_path": str(tmp_path / "img.png"), "mask_path": str(tmp_path / "mask.png"),
                      "height": 40, "width": 60}, cams=cams, keys=np.array([2, 3], np.uint8))
    return tmp_path / "a.h5"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True)


def test_inspect_prints_provenance_tree_and_ranges(artifact):
    proc = cli("inspect", str(artifact))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("@stage: cam", "@shard: shard00", "@code_hash: abc", "torch", 'params: {"scales":[1.0]}',
                 "/images/  1 image groups", "cams  (2, 40, 60) float16  range [0, 1]",
                 "keys  (2,) uint8  range [2, 3]"):
        assert text in out, text


def test_show_draws_image_cams_truth_and_labels(artifact, tmp_path):
    out = tmp_path / "show.png"
    proc = cli("show", str(artifact), "img", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    png = read_image(out)
    assert png.shape[0] > 200 and png.shape[1] > 600
    # the panels hold colour: the jet heat map of the CAM and the VOC colour of "dog" (value 2)
    assert (png.std(axis=2) > 40).mean() > 0.02


def test_show_draws_a_saliency_map(tmp_path):
    rgb = np.full((40, 60, 3), 128, np.uint8)
    write_image(tmp_path / "img.png", rgb)
    sal = np.zeros((40, 60), np.float16)
    sal[10:30, 20:40] = 1.0
    with ArtifactWriter(tmp_path / "s.h5", stage="saliency", split="val", shard="shard00", classes=["cat"],
                        params={"source": "manifold_ranking"}, code_hash="abc") as w:
        w.add("img", {"image_path": str(tmp_path / "img.png"), "height": 40, "width": 60}, saliency=sal)
    proc = cli("show", str(tmp_path / "s.h5"), "img", "-o", str(tmp_path / "show.png"))
    assert proc.returncode == 0, proc.stderr
    png = read_image(tmp_path / "show.png")
    assert png.shape[1] > 3 * 200  # image, grey map, heat map side by side
    black = (png.max(axis=2) < 15).mean()  # the grey map's non-salient part
    blue = ((png[..., 2].astype(int) - png[..., 0]) > 50).mean()  # the heat map's cold part
    assert black > 0.05 and blue > 0.05


def test_show_draws_superpixel_boundaries(tmp_path):
    write_image(tmp_path / "img.png", np.full((40, 60, 3), 40, np.uint8))
    seg = np.zeros((40, 60), np.int32)
    seg[:, 30:] = 1
    with ArtifactWriter(tmp_path / "sp.h5", stage="superpixels", split="train", shard="shard00", classes=["cat"],
                        params={"method": "felzenszwalb"}, code_hash="abc") as w:
        w.add("img", {"image_path": str(tmp_path / "img.png"), "height": 40, "width": 60}, superpixels=seg)
    proc = cli("show", str(tmp_path / "sp.h5"), "img", "-o", str(tmp_path / "show.png"))
    assert proc.returncode == 0, proc.stderr
    png = read_image(tmp_path / "show.png").astype(int)
    yellow = (png[..., 0] > 200) & (png[..., 1] > 200) & (png[..., 2] < 80)
    assert yellow.sum() > 40  # the boundary between the two regions, drawn in yellow


def test_cli_errors_name_the_file_and_image(artifact, tmp_path):
    proc = cli("show", str(artifact), "nope", "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 1 and "a.h5: image nope: not in this artifact" in proc.stderr
    proc = cli("inspect", str(tmp_path / "missing.h5"))
    assert proc.returncode == 1 and "missing.h5" in proc.stderr


def test_config_command_prints_the_completed_config():
    proc = cli("config", str(REPO / "config" / "config.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "momentum: 0.9" in proc.stdout and "name: mobilenet_v2" in proc.stdout


def test_show_finds_the_shard_of_a_stage_and_uses_the_runs_threshold(artifact, tmp_path):
    import argparse
    import json
    import shutil

    from pipeline.__main__ import show_target

    res = tmp_path / "results"
    (res / "cam/val").mkdir(parents=True)
    (res / "metrics").mkdir()
    shutil.copy(artifact, res / "cam/val/shard01.h5")
    (res / "metrics/cam.json").write_text(json.dumps({"best_threshold": 0.37}))
    args = argparse.Namespace(target=["cam", "val", "img"], threshold=None, results=str(res))
    assert show_target(args) == (res / "cam/val/shard01.h5", "img", 0.37)
    args.threshold = 0.2
    assert show_target(args)[2] == 0.2
    proc = cli("show", "cam", "val", "img", "-o", str(tmp_path / "s.png"), "--results", str(res))
    assert proc.returncode == 0 and read_image(tmp_path / "s.png").shape[2] == 3
    proc = cli("show", "cam", "val", "other", "-o", str(tmp_path / "s.png"), "--results", str(res))
    assert proc.returncode == 1 and "image other is in no shard of cam, split val" in proc.stderr
    proc = cli("show", "rw", "val", "img", "-o", str(tmp_path / "s.png"), "--results", str(res))
    assert proc.returncode == 1 and "no HDF5 shards of stage 'rw', split 'val' (stages with that split" in proc.stderr


def test_inspect_errors_name_the_file_and_the_problem(tmp_path):
    (tmp_path / "notes.h5").write_text("not hdf5")
    proc = cli("inspect", str(tmp_path / "notes.h5"))
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: {tmp_path / 'notes.h5'}: not a readable HDF5 file")
    proc = cli("inspect", str(tmp_path / "none.h5"))
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {tmp_path / 'none.h5'}: no such file"


def test_version_names_the_package_and_the_commit():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("wsss-pipeline 0.1.0")
    assert "commit " in proc.stdout and str(REPO) in proc.stdout  # run from the checkout
