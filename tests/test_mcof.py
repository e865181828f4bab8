"""MCOF groundwork: superpixels, per-superpixel averaging, the seed rule and the Bayesian
combination on hand-made cases with known answers."""
import numpy as np
import pytest

from pipeline.mcof import UNDECIDED, initial_seeds, seed_mask
from pipeline.mcof_saliency import bayesian_refinement, refine_image
from pipeline.regionnet import apply_regionnet, load_regionnet, pool_region_features, region_labels, train_regionnet
from pipeline.superpixels import consecutive, region_graph, region_means, superpixels

# 2 x 3 regions of 2 x 2 pixels:  0 1 2
#                                 3 4 5
SEGMENTS = np.kron(np.arange(6).reshape(2, 3), np.ones((2, 2), int))


def test_region_means_and_graph_on_a_hand_made_partition():
    cams = np.zeros((2, 4, 6))
    cams[0, :2, :2] = 1.0  # class map 0: region 0 full
    cams[0, 0, 2] = 1.0  # one pixel of region 1
    cams[1] = np.arange(24).reshape(4, 6) / 23
    means = region_means(cams, SEGMENTS)
    assert means.shape == (2, 6)
    np.testing.assert_allclose(means[0], [1, 0.25, 0, 0, 0, 0])
    np.testing.assert_allclose(means[1, 0], np.mean([0, 1, 6, 7]) / 23)
    adj = region_graph(SEGMENTS)
    assert sorted(np.flatnonzero(adj[4])) == [1, 3, 5] and sorted(np.flatnonzero(adj[0])) == [1, 3]
    assert (adj == adj.T).all() and not adj.diagonal().any()


def test_seeds_are_local_maxima_or_above_the_threshold_of_present_classes_only():
    adj = region_graph(SEGMENTS)
    keys = np.array([3, 7])  # the image's classes
    means = np.array([[0.9, 0.5, 0.2, 0.4, 0.3, 0.05],    # class 3: max at region 0, 0.5 > threshold .45
                      [0.1, 0.3, 0.35, 0.02, 0.5, 0.6]])  # class 7: max at region 5 (0.6 > 0.5)
    labels = initial_seeds(means, keys, adj, threshold=0.45, bg_threshold=0.1)
    # region 0: class 3 (local max); 1: class 3 (above threshold, beats class 7's 0.3)
    # 2: class 7's 0.35 is a local max among 1 (0.3) and 5 (0.6)? no -> undecided
    # 3: class 3's 0.4 is a local max among 0 (0.9)? no; class 7 0.02 -> undecided
    # 4: class 7's 0.5 > threshold; 5: class 7 local max and above threshold
    assert labels.tolist() == [3, 3, UNDECIDED, UNDECIDED, 7, 7]
    # background seeds where every present class is below bg_threshold
    low = np.array([[0.9, 0.05, 0.05, 0.05, 0.05, 0.05]])
    assert initial_seeds(low, np.array([2]), adj, 0.45, 0.1).tolist() == [2, 0, 0, 0, 0, 0]
    # a flat zero map has no local maxima
    assert (initial_seeds(np.zeros((1, 6)), np.array([2]), adj, 0.45, 0.1) == 0).all()
    assert (initial_seeds(np.zeros((0, 6)), np.array([], int), adj, 0.45, 0.1) == 0).all()  # no labels


def test_seed_mask_of_an_image_without_labels_is_background():
    mask = seed_mask(np.zeros((0, 4, 6), np.float16), np.array([], np.uint8), SEGMENTS, {"threshold": 0.5,
                                                                                         "bg_threshold": 0.1})
    assert mask.shape == (4, 6) and (mask == 0).all()


def test_bayesian_refinement_on_a_known_case():
    # the region is the left half; the saliency is 1 on the left 3/4 and 0 on the right 1/4
    region = np.zeros((4, 8), bool)
    region[:, :4] = True
    sal = np.zeros((4, 8))
    sal[:, :6] = 1.0
    post = bayesian_refinement(np.full((4, 8), 0.5), region, sal, bins=2, eps=0.0)
    # p(s=1 | obj) = 1, p(s=1 | bg) = 1/2 -> P(obj | s=1) = 0.5 / (0.5 + 0.25) = 2/3; p(s=0 | obj) = 0 -> 0
    np.testing.assert_allclose(post[:, :6], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(post[:, 6:], 0.0)
    # a sure prior is kept; a missed salient part next to a confident region joins the object
    prior = np.where(region, 0.9, 0.5)
    post = bayesian_refinement(prior, region, sal, bins=2)
    assert (post[:, :4] > 0.9).all() and (post[:, 4:6] > 0.5).all() and (post[:, 6:] < 0.01).all()


@pytest.mark.parametrize("method, params", [("felzenszwalb", {"scale": 50, "sigma": 0.5, "min_size": 10}),
                                            ("slic", {"n_segments": 20, "compactness": 10})])
def test_superpixels_follow_colour_edges(method, params):
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[:, 20:] = (200, 30, 30)
    seg = superpixels(rgb, method, **params)
    assert seg.dtype == np.int32 and seg.min() == 0 and set(np.unique(seg)) == set(range(seg.max() + 1))
    # no superpixel straddles the edge
    assert not set(np.unique(seg[:, :20])) & set(np.unique(seg[:, 20:]))
    assert consecutive(np.array([[5, 5], [9, 2]])).tolist() == [[1, 1], [2, 0]]
    with pytest.raises(ValueError, match="choose one of felzenszwalb, slic"):
        superpixels(rgb, "watershed")


def test_region_features_are_pixel_weighted_means_of_the_grid_cells():
    # a 2 x 2 feature grid over a 4 x 4 image; region 0 = the top-left cell plus one pixel of the
    # top-right cell, region 1 = the rest
    features = np.stack([np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[10.0, 0.0], [0.0, 0.0]])])
    seg = np.ones((4, 4), int)
    seg[:2, :2] = 0
    seg[0, 2] = 0
    pooled = pool_region_features(features, seg)
    assert pooled.shape == (2, 2)
    np.testing.assert_allclose(pooled[0], [(4 * 1 + 2) / 5, 40 / 5])
    np.testing.assert_allclose(pooled[1], [(3 * 2 + 4 * 3 + 4 * 4) / 11, 0])


def test_region_labels_take_the_majority_of_present_classes():
    mask = np.zeros((4, 6), np.uint8)
    mask[:2, :2] = 3              # region 0: all class 3
    mask[0, 2:4] = 3              # region 1: 2 of 4 pixels class 3, 2 background -> tie, lowest label wins
    mask[:2, 4:] = 255            # region 2: undecided
    mask[2:, :2] = 5              # region 3: class 5, absent from the image label
    mask[2:, 2:4] = [[3, 3], [3, 0]]  # region 4: 3 of 4 class 3
    labels = region_labels(mask, SEGMENTS, keys=[3])
    assert labels.tolist() == [3, 0, UNDECIDED, UNDECIDED, 3, 0]


def test_regionnet_learns_separable_regions_and_keeps_to_the_image_label():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 8))  # background and 3 classes, well apart in feature space
    y = np.repeat(np.arange(4), 60)
    x = (centres[y] + rng.normal(0, 0.3, (len(y), 8))).astype(np.float32)
    cfg = {"hidden": 16, "dropout": 0.0, "epochs": 30, "batch_size": 32, "lr": 0.01, "weight_decay": 0.0}
    model, history = train_regionnet(x, y, n_classes=3, cfg=cfg, seed=0)
    assert history[-1]["accuracy"] == 1.0 and history[-1]["loss"] < history[0]["loss"]
    probe = centres[[0, 1, 2, 3]].astype(np.float32)
    labels, probs = apply_regionnet(model, probe, keys=[1, 2, 3])
    assert labels.tolist() == [0, 1, 2, 3] and probs.shape == (4, 4)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    # class 2 is not in this image's label: its region goes to the most probable of the others
    labels, probs = apply_regionnet(model, probe, keys=[1, 3])
    assert labels[2] in (0, 1, 3) and labels.tolist()[:2] == [0, 1] and labels[3] == 3 and probs.shape == (4, 3)
    assert (apply_regionnet(model, probe, keys=[])[0] == 0).all()  # no labels: all background


def test_regionnet_saves_and_loads(tmp_path):
    from pipeline.nets import save_model

    x = np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32)
    cfg = {"hidden": 4, "dropout": 0.5, "epochs": 1, "batch_size": 8, "lr": 0.01, "weight_decay": 0.0}
    model, _ = train_regionnet(x, np.arange(20) % 3, n_classes=2, cfg=cfg, seed=0)
    save_model(model, tmp_path / "regionnet.pt", {"classes": ["a", "b"], "source": "mcof_seeds"})
    loaded, extra = load_regionnet(tmp_path / "regionnet.pt")
    assert extra == {"classes": ["a", "b"], "source": "mcof_seeds"}
    np.testing.assert_array_equal(apply_regionnet(loaded, x, [1, 2])[1], apply_regionnet(model, x, [1, 2])[1])
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.pt: not a RegionNet"):
        load_regionnet(tmp_path / "bad.pt")


def test_saliency_refines_single_class_images_only():
    # RegionNet found the left half (regions 0, 3) of a class-4 object; the saliency covers the
    # left two thirds (regions 0, 1, 3, 4): the salient region 1 and 4 pixels join the object
    mask = np.where(np.isin(SEGMENTS, [0, 3]), 4, 0).astype(np.uint8)
    probs = np.array([[0.1, 0.9], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.9, 0.1]])
    sal = np.zeros((4, 6))
    sal[:, :4] = 1.0
    cfg = {"bins": 2, "threshold": 0.5}
    refined = refine_image(mask, probs, np.array([0, 4]), SEGMENTS, sal, cfg)
    assert refined.tolist() == np.where(np.isin(SEGMENTS, [0, 1, 3, 4]), 4, 0).tolist()
    # two classes: the saliency cannot tell which object is which, RegionNet's map stays
    two = np.where(SEGMENTS == 5, 2, mask).astype(np.uint8)
    probs3 = np.concatenate([probs, np.zeros((6, 1))], 1)
    np.testing.assert_array_equal(refine_image(two, probs3, np.array([0, 2, 4]), SEGMENTS, sal, cfg), two)
    # no labels: unchanged (all background)
    empty = np.zeros((4, 6), np.uint8)
    np.testing.assert_array_equal(refine_image(empty, probs[:, :1], np.array([0]), SEGMENTS, sal, cfg), empty)


def test_refinement_stage_keeps_regionnet_where_the_saliency_map_is_missing(tmp_path):
    from pipeline.artifacts import ArtifactReader, ArtifactWriter
    from pipeline.mcof_saliency import run

    mask = np.where(np.isin(SEGMENTS, [0, 3]), 4, 0).astype(np.uint8)
    probs = np.array([[0.1, 0.9], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.9, 0.1]], np.float16)
    sal = np.zeros((4, 6), np.float16)
    sal[:, :4] = 1.0
    common = {"split": "train", "shard": "shard00", "classes": ["a"] * 8, "params": {}, "code_hash": "x"}
    with ArtifactWriter(tmp_path / "regions.h5", stage="mcof_regionnet_r1", **common) as w:
        for iid in ("with_map", "without_map"):
            w.add(iid, {"image_path": f"{iid}.png"}, mask=mask, probs=probs, keys=np.array([0, 4], np.uint8))
    with ArtifactWriter(tmp_path / "sp.h5", stage="superpixels", **common) as w:
        for iid in ("with_map", "without_map"):
            w.add(iid, {}, superpixels=SEGMENTS.astype(np.int32))
    with ArtifactWriter(tmp_path / "sal.h5", stage="saliency", **common) as w:
        w.add("with_map", {}, saliency=sal)
    run(region_path=tmp_path / "regions.h5", superpixel_path=tmp_path / "sp.h5", saliency_path=tmp_path / "sal.h5",
        cfg={"bins": 2, "threshold": 0.5}, code_hash="x", split="train", shard="shard00", out_path=tmp_path / "out.h5")
    with ArtifactReader(tmp_path / "out.h5", stage="mcof_saliency") as rd:
        assert rd.read("with_map", "mask")["mask"].tolist() == np.where(np.isin(SEGMENTS, [0, 1, 3, 4]), 4, 0).tolist()
        np.testing.assert_array_equal(rd.read("without_map", "mask")["mask"], mask)
        assert rd.image_attrs("with_map")["image_path"] == "with_map.png"
