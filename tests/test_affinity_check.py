"""affinity-check: the separation of same-class and different-class pairs by AffinityNet's affinities."""
import json

import numpy as np
import pytest
import torch

from pipeline.affinity_check import (BINS, WALKS, WalkCheck, auc, edited_affinities,
                                     ground_truth_pairs, pair_histograms, summary, walk_grid)
from pipeline.grid_pairs import neighbour_offsets
from pipeline.imageio import IGNORE
from pipeline.random_walk import neighbour_affinities
from pipeline.train_affinity import cell_labels


def two_regions(h=12, w=16, c=8):
    """Features 0 on the left half and 1 on the right (W = exp(-1) across), labels 1 and 2."""
    f = torch.zeros(c, h, w)
    f[:, :, w // 2:] = 1.0
    cells = torch.ones(h, w, dtype=torch.long)
    cells[:, w // 2:] = 2
    return f, cells


def brute_force_pairs(cells: np.ndarray, radius: int):
    """(same, different) pair counts: every unordered pair within the radius, both labels known."""
    h, w = cells.shape
    same = diff = 0
    for y in range(h):
        for x in range(w):
            for dy, dx in neighbour_offsets(radius):
                y2, x2 = y + dy, x + dx
                if (dy, dx) <= (0, 0) or not (0 <= y2 < h and 0 <= x2 < w):
                    continue
                if cells[y, x] == IGNORE or cells[y2, x2] == IGNORE:
                    continue
                same += cells[y, x] == cells[y2, x2]
                diff += cells[y, x] != cells[y2, x2]
    return same, diff


def test_auc_of_histograms():
    hi, lo = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    hi[900], lo[100] = 3, 5
    assert auc(hi, lo) == 1.0 and auc(lo, hi) == 0.0
    assert auc(hi, hi) == 0.5  # ties count half
    assert np.isnan(auc(hi, np.zeros(BINS, np.int64)))
    # against the pairwise definition on random values, shifted so that the answer is not 0, 0.5 or 1
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, BINS, 300), rng.integers(BINS // 4, BINS, 200)
    pairwise = ((a[:, None] > b[None]) + 0.5 * (a[:, None] == b[None])).mean()
    assert 0.2 < pairwise < 0.45
    assert auc(np.bincount(a, minlength=BINS), np.bincount(b, minlength=BINS)) == pytest.approx(pairwise)


def test_regions_apart_separate_perfectly_and_identical_features_not_at_all():
    f, cells = two_regions()
    same, diff = pair_histograms(f, cells, radius=5)
    s = summary(same, diff)
    assert s["auc"] == 1.0
    assert s["mean_w_same"] == pytest.approx(1.0) and s["mean_w_different"] == pytest.approx(np.exp(-1), abs=1e-3)
    flat = pair_histograms(torch.zeros_like(f), cells, radius=5)
    assert summary(*flat)["auc"] == 0.5
    # a feature grid a row and a column larger than the labels' (as at image sizes that are not
    # multiples of 8) is cut at the bottom and right: outliers there must not reach any pair
    wide = torch.full((f.shape[0], f.shape[1] + 1, f.shape[2] + 1), 50.0)
    wide[:, :-1, :-1] = f
    assert summary(*pair_histograms(wide, cells, radius=5))["auc"] == 1.0


def test_grids_smaller_than_the_radius():
    """An image under ~24 px gives a grid of 1-3 cells: the far offsets have no pairs, no error."""
    f, cells = two_regions(h=2, w=3)
    same, diff = pair_histograms(f, cells, radius=5)
    assert (same.sum(), diff.sum()) == brute_force_pairs(cells.numpy(), 5)
    assert pair_histograms(f[:, :1, :1], cells[:1, :1], radius=5)[0].sum() == 0


@pytest.mark.parametrize("radius", [2, 5])
def test_every_known_pair_is_counted_once(radius):
    rng = np.random.default_rng(radius)
    cells = rng.integers(0, 3, (9, 11))
    cells[rng.random(cells.shape) < 0.2] = IGNORE
    f = torch.from_numpy(rng.normal(size=(4, 10, 12))).float()  # a grid one cell larger: cut to the labels
    same, diff = pair_histograms(f, torch.from_numpy(cells), radius)
    assert (same.sum(), diff.sum()) == brute_force_pairs(cells, radius)


def test_histograms_hold_the_affinities_of_the_pairs():
    """The binned values are W of the pairs: the mean over all pairs matches neighbour_affinities'."""
    rng = np.random.default_rng(3)
    f = torch.from_numpy(rng.normal(scale=0.3, size=(4, 7, 9))).float()
    cells = torch.zeros(7, 9, dtype=torch.long)
    same, diff = pair_histograms(f, cells, radius=3)
    assert diff.sum() == 0
    aff, valid = neighbour_affinities(f, 3, 1.0)
    offsets = neighbour_offsets(3)
    keep = torch.tensor([(dy, dx) != (0, 0) for dy, dx in offsets])
    expected = aff[keep][valid[keep]].mean().item()  # each pair twice, so the same mean
    assert summary(same, diff)["mean_w_same"] == pytest.approx(expected, abs=1e-3)


def test_asking_for_a_gpu_where_there_is_none_is_an_error_naming_the_option(tmp_path, monkeypatch, capsys):
    from pipeline.__main__ import main

    model = tmp_path / "affinity.pt"
    model.write_bytes(b"")  # never opened: the device is checked first
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["affinity-check", "--results", str(tmp_path), "--model", str(model), "--split", "train", "--device", "cuda"]
    assert main(argv) == 1
    assert "--device cuda, but no CUDA device is visible" in capsys.readouterr().err


@pytest.mark.parametrize("grid", [(9, 11), (10, 13), (7, 8)])
def test_ground_truth_pairs_mark_each_known_pair_of_the_walk_layout(grid):
    """Offset p at (y, x) pairs the cell with (y + dy, x + dx), as neighbour_affinities' W does;
    labels are cut to a smaller grid and padded as unknown on a larger one."""
    rng = np.random.default_rng(sum(grid))
    cells = rng.integers(0, 3, (9, 11))
    cells[rng.random(cells.shape) < 0.2] = IGNORE
    same, different = ground_truth_pairs(torch.from_numpy(cells), 3, grid)
    h, w = grid
    for p, (dy, dx) in enumerate(neighbour_offsets(3)):
        for y in range(h):
            for x in range(w):
                y2, x2 = y + dy, x + dx
                inside = 0 <= y2 < h and 0 <= x2 < w and max(y, y2) < 9 and max(x, x2) < 11
                known = inside and cells[y, x] != IGNORE and cells[y2, x2] != IGNORE
                assert same[p, y, x] == (known and cells[y, x] == cells[y2, x2])
                assert different[p, y, x] == (known and cells[y, x] != cells[y2, x2])


def test_edited_affinities_put_right_only_the_known_pairs():
    w = torch.full((2, 2, 2), 0.3)
    same = torch.zeros(2, 2, 2, dtype=torch.bool)
    different = torch.zeros_like(same)
    same[0, 0, 0], different[1, 1, 1] = True, True
    edited = edited_affinities(w, same, different)
    assert list(edited) == list(WALKS)
    assert torch.equal(edited["as trained"], w)
    assert edited["no leaks"][1, 1, 1] == 0 and edited["no leaks"][0, 0, 0] == pytest.approx(0.3)
    assert edited["full links"][0, 0, 0] == 1 and edited["full links"][1, 1, 1] == pytest.approx(0.3)
    assert edited["perfect"][0, 0, 0] == 1 and edited["perfect"][1, 1, 1] == 0
    assert (edited["perfect"].flatten()[2:-1] == pytest.approx(0.3))


def two_objects(size=12):
    """Ground truth of two square objects (classes 1, 2) on background, cell-aligned at stride 8,
    and CAMs that cover only each object's middle."""
    gt = np.zeros((8 * size, 8 * size), np.uint8)
    gt[8:40, 8:40], gt[56:88, 56:88] = 1, 2
    cams = np.zeros((2, 8 * size, 8 * size), np.float32)
    cams[0, 16:32, 16:32], cams[1, 64:80, 64:80] = 1.0, 1.0
    return gt, cams


def test_walks_within_the_objects_fill_them_and_uninformative_affinities_do_not():
    """Features alike everywhere (W = 1 for every pair) spread the CAMs over the background; with
    the pairs across the objects' borders cut (no leaks, perfect) the CAMs fill their objects."""
    gt, cams = two_objects()
    cfg = {"normalisation": "irn", "beta": 8.0, "logt": 5, "bg_threshold": 0.25}
    walks = WalkCheck(cfg, radius=5, n_classes=3)
    walks.add(torch.zeros(4, 12, 12), cell_labels(torch.from_numpy(gt.astype(np.int64))), cams, [1, 2], gt)
    assert list(walks.result()) == [(8.0, 5)]  # the run's power and walk length only
    result = walks.result()[8.0, 5]
    assert list(result) == list(WALKS)
    assert result["perfect"][0] > 0.95 and result["no leaks"][0] > 0.95
    assert result["as trained"][0] < result["perfect"][0] - 0.1
    assert result["full links"][0] == pytest.approx(result["as trained"][0])  # W is 1 within already
    assert all(score in walk_grid() for _, score, _ in result.values())  # the schema's evaluation sweep
    coarse = WalkCheck(cfg, radius=5, n_classes=3, grid=[0.2, 0.5])
    coarse.add(torch.zeros(4, 12, 12), cell_labels(torch.from_numpy(gt.astype(np.int64))), cams, [1, 2], gt)
    assert all(score in (0.2, 0.5) for _, score, _ in coarse.result()[8.0, 5].values())
    assert coarse.run_score == 0.2  # the run's 0.25 is not on this grid: its nearest score, named as used
    # beside each best, the mIoU at the run's own background score (what its rw masks take)
    three = WalkCheck(cfg, radius=5, n_classes=3, grid=[0.1, 0.25, 0.9])
    alone = WalkCheck(cfg, radius=5, n_classes=3, grid=[0.25])
    for check in (three, alone):
        check.add(torch.zeros(4, 12, 12), cell_labels(torch.from_numpy(gt.astype(np.int64))), cams, [1, 2], gt)
    for name, (miou, _, at_run) in three.result()[8.0, 5].items():
        assert at_run == alone.result()[8.0, 5][name][0] == alone.result()[8.0, 5][name][2] and at_run <= miou


def test_several_walk_lengths_in_one_pass_score_as_each_walked_alone():
    """logts walks each length over the same transition: each as a check of that length alone,
    and a longer walk over W = 1 everywhere spreads the CAMs further (no better best mIoU)."""
    gt, cams = two_objects()
    cells = cell_labels(torch.from_numpy(gt.astype(np.int64)))
    features = torch.randn(4, 12, 12, generator=torch.Generator().manual_seed(0))
    cfg = {"normalisation": "irn", "beta": 8.0, "logt": 5, "bg_threshold": 0.25}
    both = WalkCheck(cfg, radius=5, n_classes=3, logts=[5, 1])
    both.add(features, cells, cams, [1, 2], gt)
    result = both.result()
    assert sorted(result) == [(8.0, 1), (8.0, 5)]
    for logt in (1, 5):
        alone = WalkCheck({**cfg, "logt": logt}, radius=5, n_classes=3)
        alone.add(features, cells, cams, [1, 2], gt)
        assert alone.result()[8.0, logt] == result[8.0, logt]
    assert result[8.0, 1] != result[8.0, 5]  # the lengths are walked, not one copied
    flat = WalkCheck(cfg, radius=5, n_classes=3, logts=[1, 7])
    flat.add(torch.zeros(4, 12, 12), cells, cams, [1, 2], gt)
    assert flat.result()[8.0, 7]["as trained"][0] <= flat.result()[8.0, 1]["as trained"][0]


def test_several_powers_in_one_pass_score_as_each_walked_alone():
    """betas walks W^beta for each beta, each with every length: each as a check with that beta alone."""
    gt, cams = two_objects()
    cells = cell_labels(torch.from_numpy(gt.astype(np.int64)))
    features = torch.randn(4, 12, 12, generator=torch.Generator().manual_seed(0))
    cfg = {"normalisation": "irn", "beta": 8.0, "logt": 5, "bg_threshold": 0.25}
    several = WalkCheck(cfg, radius=5, n_classes=3, logts=[2, 5], betas=[16.0, 1.0])
    several.add(features, cells, cams, [1, 2], gt)
    result = several.result()
    assert sorted(result) == [(1.0, 2), (1.0, 5), (16.0, 2), (16.0, 5)]
    for beta in (1.0, 16.0):
        alone = WalkCheck({**cfg, "beta": beta}, radius=5, n_classes=3, logts=[2, 5])
        alone.add(features, cells, cams, [1, 2], gt)
        assert alone.result() == {k: v for k, v in result.items() if k[0] == beta}
    assert result[1.0, 5]["as trained"] != result[16.0, 5]["as trained"]  # the powers are walked, not one copied
    assert result[1.0, 5]["full links"] != result[16.0, 5]["full links"]  # W^beta below 1 outside the objects


def test_the_walk_grid_is_the_runs_own_rw_sweep_when_recorded(tmp_path):
    from pipeline.config import resolve
    from pipeline.evaluate import threshold_grid

    default = threshold_grid(resolve({})["evaluation"]["bg_threshold"])
    np.testing.assert_array_equal(walk_grid(tmp_path), default)  # no metrics: the schema's grid
    (tmp_path / "metrics" / "train_split").mkdir(parents=True)
    (tmp_path / "metrics" / "rw.json").write_text(json.dumps({"threshold_sweep": [{"threshold": 0.3, "miou": 0.4}]}))
    np.testing.assert_array_equal(walk_grid(tmp_path), [0.3])
    (tmp_path / "metrics" / "train_split" / "rw.json").write_text(
        json.dumps({"threshold_sweep": [{"threshold": t, "miou": 0.1} for t in (0.1, 0.2)]}))
    np.testing.assert_array_equal(walk_grid(tmp_path), [0.1, 0.2])  # the training split's, where chosen


def test_psa_walks_are_scored_by_their_argmax():
    """PSA's walk carries its own background channel: each mask is the argmax, no score swept."""
    gt, _ = two_objects()
    cams = np.stack([gt == 1, gt == 2]).astype(np.float32)  # PSA's background (1 - CAM)^alpha is 0 on them
    walks = WalkCheck({"normalisation": "psa", "beta": 8.0, "logt": 5, "alpha": 16}, radius=5, n_classes=3)
    walks.add(torch.zeros(4, 12, 12), cell_labels(torch.from_numpy(gt.astype(np.int64))), cams, [1, 2], gt)
    result = walks.result()[8.0, 5]
    assert all(score is None and at_run is None for _, score, at_run in result.values())
    assert result["perfect"][0] > 0.95 and result["perfect"][0] >= result["as trained"][0]


def test_walk_settings_of_an_older_run_are_an_error_naming_the_file(tmp_path, capsys):
    """--walk reads the walk's settings from the run's rw artifacts; one without them is named."""
    from pipeline.__main__ import main
    from pipeline.artifacts import ArtifactWriter

    results = tmp_path / "results"
    (results / "affinity").mkdir(parents=True)
    (results / "affinity" / "model.pt").write_bytes(b"")  # never opened: the settings are read first
    for stage in ("cam", "rw"):
        (results / stage / "train").mkdir(parents=True)
        with ArtifactWriter(results / stage / "train" / "shard00.h5", stage=stage, split="train", shard="shard00",
                            classes=["a"], params={"beta": 8.0, "radius": 5}, code_hash="x"):
            pass
    argv = ["affinity-check", "--results", str(results), "--split", "train", "--walk", "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    shard = results / "rw" / "train" / "shard00.h5"
    assert f"{shard}: the walk's settings lack normalisation, logt, bg_threshold " in err
