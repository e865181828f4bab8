"""The shared dense-CRF module: profiles, edges from the real image, label unaries, parallel map."""
import numpy as np
import pytest

from pipeline import crf
from pipeline.config import resolve
from pipeline.crf import crf_labels, dense_crf, dense_crfs, parallel_map

PROFILES = resolve({})["crf"]["profiles"]


def two_regions(h=40, w=60, edge=27):
    """Dark left part, bright right part, the boundary at column `edge`."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, :edge] = (30, 40, 50)
    rgb[:, edge:] = (220, 200, 40)
    truth = np.zeros((h, w), np.int64)
    truth[:, edge:] = 1
    return rgb, truth


def test_profiles_hold_the_papers_values():
    assert PROFILES["deeplab"] == {"bilateral": {"compat": 4, "srgb": 3, "sxy": 67},
                                   "gaussian": {"compat": 3, "sxy": 1},
                                   "gt_prob": 0.7, "iterations": 10, "unary": "scores"}
    assert (PROFILES["psa"]["bilateral"] == {"compat": 10, "srgb": 13, "sxy": 80}
            and PROFILES["psa"]["gaussian"]["sxy"] == 3)
    assert PROFILES["irn"]["unary"] == "labels" and PROFILES["irn"]["bilateral"] == {"compat": 10, "srgb": 5, "sxy": 50}
    partial = resolve({"crf": {"profiles": {"psa": {"iterations": 3}}}})["crf"]["profiles"]["psa"]
    assert partial["iterations"] == 3 and partial["bilateral"]["sxy"] == 80  # completed from the defaults


@pytest.mark.parametrize("name", ["deeplab", "psa"])
def test_crf_moves_a_blurred_boundary_onto_the_image_edge(name):
    rgb, truth = two_regions()
    # a soft score ramp whose 50 % point is 8 px left of the true edge, plus noise
    x = np.arange(rgb.shape[1])
    p1 = np.clip((x - 19 + 8) / 16, 0.05, 0.95)[None].repeat(rgb.shape[0], 0)
    p1 = np.clip(p1 + np.random.default_rng(0).normal(0, 0.1, p1.shape), 0.01, 0.99)
    scores = np.stack([1 - p1, p1])
    before = (scores.argmax(0) == truth).mean()
    after = (crf_labels(rgb, scores, PROFILES[name]) == truth).mean()
    assert before < 0.9 and after > 0.97 and after > before


def test_a_shrunk_crf_finds_the_same_edge_at_full_size(monkeypatch):
    """scale 0.5: the CRF on the image and scores at half size (kernels in pixels halved), its
    marginals back at full size, puts the blurred boundary on the image edge as the full CRF does."""
    rgb, truth = two_regions(80, 120, 54)
    x = np.arange(rgb.shape[1])
    p1 = np.clip((x - 38 + 16) / 32, 0.05, 0.95)[None].repeat(rgb.shape[0], 0)
    scores = np.stack([1 - p1, p1])
    full = dense_crf(rgb, scores, PROFILES["psa"])
    seen, inner = [], crf._dense_crfs

    def recording(im, maps, prof):
        seen.append((im.shape, [m.shape for m in maps], prof["bilateral"]["sxy"], prof["gaussian"]["sxy"]))
        return inner(im, maps, prof)

    monkeypatch.setattr(crf, "_dense_crfs", recording)
    half = dense_crfs(rgb, [scores], PROFILES["psa"], scale=0.5)[0]
    assert seen == [((40, 60, 3), [(2, 40, 60)], 40, 1.5)]  # the CRF itself ran at half size
    assert half.shape == full.shape and np.allclose(half.sum(0), 1, atol=1e-3)
    assert (scores.argmax(0) == truth).mean() < 0.9
    assert (half.argmax(0) == truth).mean() > 0.97 and (half.argmax(0) == full.argmax(0)).mean() > 0.97
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="scale"):
            dense_crfs(rgb, [scores], PROFILES["psa"], scale=bad)


def test_bilateral_term_sees_the_image_not_just_the_scores():
    rgb, truth = two_regions()
    flat = np.zeros_like(rgb) + 128
    x = np.arange(rgb.shape[1])
    p1 = np.clip((x - 15) / 24, 0.1, 0.9)[None].repeat(rgb.shape[0], 0)
    scores = np.stack([1 - p1, p1])
    with_edge = (crf_labels(rgb, scores, PROFILES["psa"]) == truth).mean()
    without = (crf_labels(flat, scores, PROFILES["psa"]) == truth).mean()
    assert with_edge > without + 0.05


def test_label_unary_keeps_coherent_labels_and_fixes_isolated_errors():
    rgb, truth = two_regions()
    noisy = truth.copy()
    noisy[5, 5] = noisy[30, 50] = 1 - noisy[5, 5]
    noisy[30, 50] = 0
    scores = np.stack([noisy == 0, noisy == 1]).astype(np.float32)
    out = crf_labels(rgb, scores, PROFILES["irn"])
    np.testing.assert_array_equal(out, truth)


def test_marginals_are_probabilities_and_bad_input_is_refused():
    rgb, _ = two_regions(16, 16, 8)
    scores = np.random.default_rng(1).random((3, 16, 16)).astype(np.float32)
    q = dense_crf(rgb, scores, PROFILES["deeplab"])
    assert q.shape == (3, 16, 16) and np.allclose(q.sum(0), 1, atol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        dense_crf(rgb.astype(np.float32) - 100, scores, PROFILES["deeplab"])
    with pytest.raises(ValueError, match="differ in size"):
        dense_crf(rgb, scores[:, :8], PROFILES["deeplab"])


@pytest.mark.parametrize("profile", ["irn", "psa"])
def test_crfs_of_one_image_share_a_lattice_and_give_separate_results(profile):
    """affinity_labels' two settings run on one CRF per label count: each result must be the one a
    CRF of its own gives, whatever came before it."""
    rgb, _ = two_regions(24, 32, 13)
    rng = np.random.default_rng(2)
    maps = [rng.random((3, 24, 32)).astype(np.float32), rng.random((3, 24, 32)).astype(np.float32),
            rng.random((2, 24, 32)).astype(np.float32), rng.random((1, 24, 32)).astype(np.float32)]
    together = dense_crfs(rgb, maps, PROFILES[profile])
    assert [q.shape for q in together] == [m.shape for m in maps]
    for scores, q in zip(maps, together, strict=True):
        np.testing.assert_array_equal(q, dense_crfs(rgb, [scores], PROFILES[profile])[0])
    assert not np.array_equal(together[0], together[1])


def _square(x):
    return x * x


def test_parallel_map_keeps_order_and_matches_serial():
    items = list(range(23))
    assert list(parallel_map(_square, items, 2)) == list(parallel_map(_square, items, 1)) == [i * i for i in items]
