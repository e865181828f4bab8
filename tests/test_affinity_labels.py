"""Affinity labels: the two background settings, the combination rule, the CRF, the evaluation."""
import numpy as np
import pytest

from pipeline import affinity_labels
from pipeline.affinity_labels import background_scores, combine, confident_labels
from pipeline.config import resolve

CFG = resolve({})
PROFILE = CFG["crf"]["profiles"]["psa"]


def test_psa_background_scores_by_hand():
    cams = np.array([[[0.0, 0.5, 1.0]], [[0.2, 0.1, 0.0]]], np.float32)  # [K=2, 1, 3]
    fg, bg = background_scores(cams, {**CFG["affinity_labels"], "mode": "psa"})
    np.testing.assert_allclose(fg, [[0.8 ** 4, 0.5 ** 4, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(bg, [[0.8 ** 32, 0.5 ** 32, 0.0]], rtol=1e-5)


def test_irn_background_scores_are_the_thresholds():
    fg, bg = background_scores(np.zeros((1, 2, 2), np.float32), {**CFG["affinity_labels"], "mode": "irn"})
    assert np.all(fg == np.float32(0.30)) and np.all(bg == np.float32(0.05))


def test_combination_rule_by_hand():
    fg = np.array([[3, 0, 0, 3]])
    bg = np.array([[3, 3, 0, 0]])
    # object where the fg setting says object; background only where both agree; else ignore
    np.testing.assert_array_equal(combine(fg, bg), [[3, 255, 0, 3]])


@pytest.mark.parametrize("crf_scale", [1.0, 0.5])
@pytest.mark.parametrize("mode", ["psa", "irn"])
def test_confident_object_confident_background_and_an_undecided_part(mode, crf_scale):
    """An object (red core, CAM 1) with a part of its own colour (green ring, CAM 0.15): the fg
    setting calls the ring background, the bg setting calls it object, so it is left undecided."""
    h = w = 64
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(yy - 32, xx - 32)
    rgb = np.full((h, w, 3), 90, np.uint8)
    rgb[dist < 20] = (60, 200, 60)
    rgb[dist < 12] = (200, 60, 60)
    cam = np.where(dist < 12, 1.0, np.where(dist < 20, 0.15, 0.0))[None].astype(np.float32)
    cfg = {**CFG["affinity_labels"], "mode": mode, "crf_scale": crf_scale}
    out = confident_labels(rgb, cam, np.array([7]), cfg, CFG["crf"]["profiles"][mode])
    assert set(np.unique(out)) <= {0, 7, 255}
    assert np.all(out[dist < 10] == 7)
    assert np.all(out[dist > 22] == 0)
    assert (out[(dist > 13) & (dist < 19)] == 255).mean() > 0.9


def test_crf_scale_reaches_both_crfs(monkeypatch):
    seen = []
    monkeypatch.setattr(affinity_labels, "dense_crfs",
                        lambda rgb, maps, profile, scale: seen.append((len(maps), scale)) or [m for m in maps])
    cfg = {**CFG["affinity_labels"], "mode": "irn", "crf_scale": 0.25}
    confident_labels(np.zeros((8, 8, 3), np.uint8), np.ones((1, 8, 8), np.float32), np.array([3]), cfg, PROFILE)
    assert seen == [(2, 0.25)]


def test_image_without_classes_is_all_background():
    rgb = np.full((8, 8, 3), 100, np.uint8)
    out = confident_labels(rgb, np.zeros((0, 8, 8), np.float32), np.zeros(0, np.uint8), CFG["affinity_labels"], PROFILE)
    assert np.all(out == 0)
