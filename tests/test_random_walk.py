"""Random walk: the sparse transition against a dense reference, propagation within regions, masks."""
import numpy as np
import pytest
import torch

from pipeline.data import upsample_scores
from pipeline.grid_pairs import neighbour_offsets
from pipeline.imageio import read_label_map, write_label_png
from pipeline.random_walk import (neighbour_affinities, psa_background, random_walk, random_walk_dense,
                                  transition_matrix, walked_scores)


def region_features(h=24, w=30, c=16, seed=0):
    """Features that are alike within three regions (left, top right, bottom right) and differ across."""
    g = torch.Generator().manual_seed(seed)
    f = 0.05 * torch.randn(c, h, w, generator=g)
    f[: c // 2, :, w // 2:] += 3.0
    f[c // 2:, h // 2:, w // 2:] += 3.0
    return f


def test_neighbourhood_is_the_disk_and_affinities_are_symmetric():
    offsets = neighbour_offsets(5)
    assert len(offsets) == 69 and (0, 0) in offsets  # 2 x 34 pairs + the cell itself
    f = region_features()
    w, valid = neighbour_affinities(f, 5, 8.0)
    p = {d: i for i, d in enumerate(offsets)}
    # W(i, i + d) == W(i + d, i)
    assert torch.allclose(w[p[1, 2], 3, 4], w[p[-1, -2], 4, 6])
    assert not valid[p[0, 1], :, -1].any() and valid[p[0, 0]].all()
    assert torch.all(w[~valid] == 0) and torch.all(w[p[0, 0]] == 1)


def test_sparse_transition_is_row_stochastic_with_at_most_the_disk_per_row():
    f = region_features()
    t = transition_matrix(f, 5, 8.0)
    n = 24 * 30
    assert t.layout == torch.sparse_csr and t.shape == (n, n)
    per_row = t.crow_indices().diff()
    assert per_row.max() == 69 and per_row.min() >= 69 // 4  # corners see a quarter of the disk
    assert torch.allclose(t.to_dense().sum(1), torch.ones(n), atol=1e-5)
    assert t.values().numel() == int(neighbour_affinities(f, 5, 8.0)[1].sum())  # memory ~ N r^2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_walk_matches_the_dense_reference(seed):
    f = region_features(seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    maps = torch.rand(3, 24, 30, generator=g) ** 4
    sparse = random_walk(f, maps, 5, 8.0, 8)
    dense = random_walk_dense(f, maps, 5, 8.0, 8)
    assert (sparse - dense).abs().max() < 1e-4 * dense.abs().max()
    assert (sparse.argmax(0) == dense.argmax(0)).float().mean() >= 0.999


def test_walk_fills_the_region_of_a_seed_and_stops_at_affinity_edges():
    f = region_features()
    cam = torch.zeros(1, 24, 30)
    cam[0, 2:5, 2:5] = 1.0  # a small activation inside the left region
    out = random_walk(f, cam, 5, 8.0, 8)[0]
    left, right = out[:, :15], out[:, 15:]
    assert left.min() > 10 * right.max()  # spread over its whole region, not across
    assert left.std() < 0.2 * left.mean()


def test_no_maps_no_work():
    assert random_walk(region_features(), torch.zeros(0, 24, 30), 5, 8.0, 8).shape == (0, 24, 30)


def test_upsample_keeps_values_and_png_export_round_trips(tmp_path):
    scores = torch.tensor([[[0.25, 0.25], [0.25, 0.25]], [[1.0, 0.0], [0.0, 0.0]]])
    up = upsample_scores(scores, (16, 16))
    assert up.shape == (2, 16, 16) and torch.allclose(up[0], torch.tensor(0.25))
    mask = np.array([0, 3], np.uint8)[up.argmax(0).numpy()]
    mask[0, -1] = 255
    write_label_png(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(read_label_map(tmp_path / "m.png"), mask)
    from PIL import Image

    assert Image.open(tmp_path / "m.png").mode == "P"


def test_normalisations_irn_psa_and_per_class():
    """IRN divides by the image's largest walked value (one class stays below another),
    per_class lifts every class to 1, PSA walks (1 - max CAM)^alpha as a background channel."""
    torch.manual_seed(0)
    features = torch.randn(4, 6, 6)
    cams = torch.zeros(2, 48, 48)
    cams[0, :24] = 1.0   # a strong class on the top half
    cams[1, 24:] = 0.3   # a weak class on the bottom half
    base = {"beta": 8.0, "logt": 2, "bg_threshold": 0.25, "alpha": 16.0}
    irn = walked_scores(features, cams, {**base, "normalisation": "irn"}, radius=3)
    per_class = walked_scores(features, cams, {**base, "normalisation": "per_class"}, radius=3)
    psa = walked_scores(features, cams, {**base, "normalisation": "psa"}, radius=3)
    assert irn.shape == per_class.shape == psa.shape == (3, 6, 6)
    assert torch.all(irn[0] == 0.25) and torch.all(per_class[0] == 0.25)
    assert irn[1:].max() == pytest.approx(1.0) and irn[2].max() < 0.6  # the weak class stays weak
    assert per_class[1].max() == pytest.approx(1.0) and per_class[2].max() == pytest.approx(1.0)
    # PSA: the background channel is (1 - 0.3)^16 ~ 0.003 under the weak class, and wins where no class fires
    assert psa[0].max() < 0.01
    empty = cams.clone()
    empty[1, 24:, 24:] = 0
    psa_empty = walked_scores(features, empty, {**base, "normalisation": "psa"}, radius=3)
    assert (psa_empty.argmax(0)[4:, 4:] == 0).all() and (psa_empty.argmax(0)[:2] == 1).all()
    none = walked_scores(features, torch.zeros(0, 48, 48), {**base, "normalisation": "psa"}, radius=3)
    assert none.shape == (1, 6, 6) and torch.allclose(none, torch.ones(1, 6, 6), atol=1e-5)
    assert torch.allclose(psa_background(torch.tensor([[[0.5]]]), 2.0), torch.tensor([[0.25]]))
    with pytest.raises(ValueError, match="random_walk.normalisation"):
        walked_scores(features, cams, {**base, "normalisation": "mine"}, radius=3)


def test_walk_on_a_grid_smaller_than_the_radius():
    """A grid of 2 x 3 cells (an image under ~24 px) with radius 5: the walk runs and matches the dense one."""
    f = region_features(h=2, w=3)
    maps = torch.rand(2, 2, 3, generator=torch.Generator().manual_seed(0))
    sparse = random_walk(f, maps, radius=5, beta=8, logt=3)
    torch.testing.assert_close(sparse, random_walk_dense(f, maps, radius=5, beta=8, logt=3), rtol=1e-4, atol=1e-6)
