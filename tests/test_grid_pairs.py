"""The grid's pair geometry shared by AffinityNet's training and the random walk."""
import itertools

import pytest

from pipeline.grid_pairs import neighbour_offsets, offset_slices, overlap, pair_offsets


@pytest.mark.parametrize("n", [1, 2, 3, 7])
@pytest.mark.parametrize("d", [-8, -3, -1, 0, 1, 2, 6, 7, 9])
def test_overlap_pairs_every_cell_with_its_neighbour_inside_the_axis(n, d):
    a, b = overlap(n, d)
    first, second = list(range(n))[a], list(range(n))[b]
    assert list(zip(first, second)) == [(k, k + d) for k in range(n) if 0 <= k + d < n]


def test_offset_slices_give_exactly_the_pairs_inside_the_grid():
    h, w = 3, 5
    cells = list(itertools.product(range(h), range(w)))
    for dy, dx in neighbour_offsets(4):
        (ya, xa), (yb, xb) = offset_slices(h, w, dy, dx)
        grid = [[(y, x) for x in range(w)] for y in range(h)]
        first = [c for row in grid[ya] for c in row[xa]]
        second = [c for row in grid[yb] for c in row[xb]]
        expected = [((y, x), (y + dy, x + dx)) for y, x in cells if 0 <= y + dy < h and 0 <= x + dx < w]
        assert list(zip(first, second)) == expected


def test_pair_offsets_are_the_neighbourhood_once_per_unordered_pair():
    for radius in (2, 3, 5):
        half = pair_offsets(radius)
        assert sorted(half + [(-dy, -dx) for dy, dx in half] + [(0, 0)]) == sorted(neighbour_offsets(radius))
        assert len(set(half)) == len(half)
