"""Pairs of cells of a feature grid within a radius: the pairs AffinityNet trains on
(train_affinity, affinity_check) and the neighbourhoods the random walk moves through
(random_walk). One module, so that training and the walk cut the grid the same way; it
imports nothing, so an edit to the walk does not retrain AffinityNet."""
from __future__ import annotations


def pair_offsets(radius: int) -> list[tuple[int, int]]:
    """PSA's search offsets: (0, dx) for dx > 0 and (dy, dx) for dy > 0, within the radius
    (half of the disk dy^2 + dx^2 < radius^2, so each unordered pair appears once)."""
    return [(0, dx) for dx in range(1, radius)] + [
        (dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius) if dy * dy + dx * dx < radius * radius]


def neighbour_offsets(radius: int) -> list[tuple[int, int]]:
    """Every (dy, dx) with dy^2 + dx^2 < radius^2, (0, 0) included: a cell's whole neighbourhood."""
    r = radius - 1
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx < radius * radius]


def overlap(n: int, d: int) -> tuple[slice, slice]:
    """Slices a, b of a length-n axis with a[k] + d == b[k]: the cells whose neighbour at d exists
    (both empty when |d| >= n, as on the grid of an image or crop smaller than the radius)."""
    length = max(0, n - abs(d))
    return slice(max(0, -d), max(0, -d) + length), slice(max(0, d), max(0, d) + length)


def offset_slices(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """((rows, columns) of the first cells, (rows, columns) of their partners at (dy, dx)) on an
    h x w grid; empty when the offset reaches past the grid."""
    (ya, yb), (xa, xb) = overlap(h, dy), overlap(w, dx)
    return (ya, xa), (yb, xb)
