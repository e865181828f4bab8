"""PRM's instance masks: object proposals scored against each peak response map, then NMS.

Proposals (our choice; the paper used MCG, which needs its own trained edge detector and
binaries): hierarchical grouping of the image's superpixels (the `superpixels` stage), as
Selective Search does it. Starting from the superpixels, the most similar pair of adjacent
regions is merged again and again until one region is left; every region on the way is a
proposal, so proposals range from one superpixel to the whole image (every scale of the
hierarchy). Two similarity strategies diversify the hierarchy (duplicates removed):
  colour  colour-histogram intersection + size + fill
  size    size + fill (small regions merge first, whatever their colour)
with size = 1 - (a_i + a_j) / A and fill = 1 - (bounding box of both - a_i - a_j) / A.
A proposal is stored as the set of superpixels it covers (bool [P, n]).

Scoring (the paper's code; defaults from its demo): for the PRM R of a peak of class c
(normalised to sum 1) and a proposal M,
    score = balance * sum(R inside M) + sum(R on the contour of M) - penalty * |M and B_c|
where the contour is the morphological gradient of M (a contour_width square) and B_c the
pixels whose class response is below bg_factor x its mean. The paper's constants are for
448 x 448 inputs: with reference_size set, an image of other size s^2 = H x W scores with
penalty x (448^2 / s^2) (the penalty counts pixels, while the PRM sums to 1) and a contour
of contour_width x s / 448 pixels (at least 1), so the terms keep the paper's proportions.
Proposals larger than
size_limit[1] or smaller than size_limit[0] of the image are not considered. Each peak takes
its best proposal; instances then go through non-maximum suppression across classes
(highest score first; one overlapping another kept one by IoU >= nms is dropped).
Semantic masks: the union of each class's instances (the higher score wins an overlap).
"""
from __future__ import annotations

import heapq
import itertools
import logging

import numpy as np
from scipy import sparse

from .artifacts import ArtifactReader, ArtifactWriter
from .logs import progress
from .superpixels import region_graph, region_sizes

log = logging.getLogger(__name__)

STRATEGIES = ("colour", "size")
HIST_BINS = 8  # per RGB channel


# ---------------------------------------------------------------- proposals

def colour_histograms(rgb: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """[n, 3 * HIST_BINS] colour histogram of each region, each summing to 1."""
    n = int(segments.max()) + 1
    bins = (rgb.astype(np.int64) * HIST_BINS) // 256  # [H, W, 3]
    flat = segments.ravel()
    hist = np.concatenate([np.bincount(flat * HIST_BINS + bins[..., ch].ravel(), minlength=n * HIST_BINS)
                           .reshape(n, HIST_BINS) for ch in range(3)], axis=1).astype(np.float64)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def region_boxes(segments: np.ndarray) -> np.ndarray:
    """[n, 4] bounding boxes (y0, x0, y1, x1), inclusive."""
    n = int(segments.max()) + 1
    ys, xs = np.indices(segments.shape)
    flat = segments.ravel()
    boxes = np.empty((n, 4), np.int64)
    boxes[:, :2] = segments.shape  # minima start above any coordinate, maxima below
    boxes[:, 2:] = -1
    np.minimum.at(boxes[:, 0], flat, ys.ravel())
    np.minimum.at(boxes[:, 1], flat, xs.ravel())
    np.maximum.at(boxes[:, 2], flat, ys.ravel())
    np.maximum.at(boxes[:, 3], flat, xs.ravel())
    return boxes


def hierarchical_grouping(hist: np.ndarray, sizes: np.ndarray, boxes: np.ndarray, adjacency: np.ndarray,
                          image_area: int, strategy: str) -> list[frozenset]:
    """The regions formed by greedily merging the most similar adjacent pair (sets of
    superpixel ids), in merge order, starting with the single superpixels."""
    if strategy not in STRATEGIES:
        raise ValueError(f"proposal strategy {strategy!r}: choose from {', '.join(STRATEGIES)}")
    n = len(sizes)
    # boxes as tuples of Python ints: a pair's score is a few scalar operations, numpy's cost per call
    # would dominate (the same values)
    regions = {i: {"members": frozenset([i]), "hist": hist[i], "size": float(sizes[i]), "box": tuple(boxes[i].tolist())}
               for i in range(n)}
    neighbours = {i: set(np.nonzero(adjacency[i])[0].tolist()) - {i} for i in range(n)}

    def union_box(p, q):
        return min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3])

    def similarity(a, b):
        ra, rb = regions[a], regions[b]
        box = union_box(ra["box"], rb["box"])
        box_area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
        s = (1 - (ra["size"] + rb["size"]) / image_area) + (1 - (box_area - ra["size"] - rb["size"]) / image_area)
        if strategy == "colour":
            s += np.minimum(ra["hist"], rb["hist"]).sum() / 3
        return s

    # the pairs of adjacent regions, and a heap of them by similarity, first formed first among
    # equals (as max over the pairs in their order of insertion); merged regions' pairs leave
    # `pairs` and are skipped when they reach the top of the heap
    pairs, heap, formed_order = set(), [], itertools.count()

    def add_pair(a, b):
        pairs.add((a, b))
        heapq.heappush(heap, (-similarity(a, b), next(formed_order), a, b))

    for a in neighbours:
        for b in neighbours[a]:
            if a < b:
                add_pair(a, b)
    formed = [regions[i]["members"] for i in range(n)]
    next_id = n
    while pairs:
        _, _, a, b = heapq.heappop(heap)
        if (a, b) not in pairs:
            continue
        ra, rb = regions.pop(a), regions.pop(b)
        size = ra["size"] + rb["size"]
        regions[next_id] = {"members": ra["members"] | rb["members"], "size": size,
                            "hist": (ra["hist"] * ra["size"] + rb["hist"] * rb["size"]) / size,
                            "box": union_box(ra["box"], rb["box"])}
        for gone in (a, b):  # drop the merged regions' pairs (the others keep their order, and so ties)
            for m in neighbours[gone]:
                pairs.discard((min(gone, m), max(gone, m)))
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        for m in around:
            neighbours[m] -= {a, b}
            neighbours[m].add(next_id)
            add_pair(m, next_id)
        neighbours[next_id] = around
        formed.append(regions[next_id]["members"])
        next_id += 1
    return formed


def merge_proposals(rgb: np.ndarray, segments: np.ndarray, strategies=STRATEGIES) -> np.ndarray:
    """bool [P, n]: which superpixels each proposal covers (every region of every strategy's
    hierarchy, without duplicates)."""
    n = int(segments.max()) + 1
    hist, sizes, boxes = colour_histograms(rgb, segments), region_sizes(segments), region_boxes(segments)
    adjacency = region_graph(segments)
    seen, membership = set(), []
    for strategy in strategies:
        for members in hierarchical_grouping(hist, sizes, boxes, adjacency, segments.size, strategy):
            if members not in seen:
                seen.add(members)
                row = np.zeros(n, bool)
                row[list(members)] = True
                membership.append(row)
    return np.array(membership, bool).reshape(-1, n)


# ---------------------------------------------------------------- scoring and NMS

def window_sets(segments: np.ndarray, width: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The superpixels each pixel's width x width window sees (the image border clips the
    window), for the pixels whose window sees more than one: (sets, index) with sets a bool
    sparse [U, n] of the distinct sets and index [H * W] the row of each pixel's set, -1 where
    the window sees one superpixel only.

    A proposal is a union of superpixels, so its morphological gradient (dilation minus
    erosion with that square; the border does not erode) holds exactly the pixels whose
    window sees a superpixel inside it and one outside it: one such test per distinct set
    scores every proposal's contour without drawing a mask."""
    h, w = segments.shape
    n = int(segments.max()) + 1
    pad = width // 2
    labels = segments.astype(np.int32)
    padded = np.pad(labels, ((pad, width - 1 - pad), (pad, width - 1 - pad)), constant_values=-1)
    seen = np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(width) for dx in range(width)], -1)
    seen = seen.reshape(h * w, width * width)
    own = labels.reshape(-1, 1)
    seen = np.where(seen < 0, own, seen)  # outside the image: the pixel's own region, which it sees anyway
    mixed = seen.min(1) != seen.max(1)
    rows = np.sort(seen[mixed], axis=1)
    rows[:, 1:][rows[:, 1:] == rows[:, :-1]] = -1  # each superpixel once per row, then a canonical order
    rows = np.sort(rows, axis=1)[:, -int((rows >= 0).sum(1).max(initial=1)):]  # the -1s come first
    if (n + 1) ** rows.shape[1] < 2 ** 62:  # one integer per set: np.unique on rows is ten times slower
        key = ((rows + 1).astype(np.int64) * (n + 1) ** np.arange(rows.shape[1], dtype=np.int64)).sum(1)
        keys, inverse = np.unique(key, return_inverse=True)
        distinct = np.empty((len(keys), rows.shape[1]), rows.dtype)
        distinct[inverse.ravel()] = rows  # rows of one key are equal
    else:  # np.unique(rows, axis=0)'s result (rows in lexicographic order), by a lexsort: 10x faster
        order = np.lexsort(rows.T[::-1])
        ordered = rows[order]
        first = np.ones(len(rows), bool)
        first[1:] = (ordered[1:] != ordered[:-1]).any(1)
        distinct = ordered[first]
        inverse = np.empty(len(rows), np.int64)
        inverse[order] = np.cumsum(first) - 1
    index = np.full(h * w, -1, np.int64)
    index[mixed] = inverse.ravel()
    u, k = np.nonzero(distinct >= 0)
    sets = sparse.csr_matrix((np.ones(len(u), bool), (u, distinct[u, k])), shape=(len(distinct), n))
    return sets, index


def contour_mass(membership: np.ndarray, segments: np.ndarray, prms: np.ndarray, width: int) -> np.ndarray:
    """float [P, Q]: the sum of each PRM over each proposal's contour (its morphological
    gradient with a width x width square, which the image border does not erode)."""
    q = len(prms)
    sets, index = window_sets(segments, width)
    on_sets = index >= 0
    if not on_sets.any():  # width 1, or a single superpixel: no contour anywhere
        return np.zeros((len(membership), q))
    mass = np.stack([np.bincount(index[on_sets], prms[i].ravel()[on_sets], minlength=sets.shape[0])
                     for i in range(q)], 1)  # [U, Q]
    inside = sets.astype(np.float32) @ membership.T.astype(np.float32)  # [U, P] members of each set inside
    size = np.asarray(sets.sum(1), np.float32)  # [U, 1]
    cut = (inside > 0) & (inside < size)  # the set sees the proposal and its outside
    return cut.T.astype(np.float64) @ mass


def score_proposals(membership: np.ndarray, segments: np.ndarray, prms: np.ndarray, background: np.ndarray,
                    cfg: dict) -> np.ndarray:
    """float [P, Q]: the score of every proposal for every peak; -inf where the proposal's
    size is outside cfg["size_limit"]. prms [Q, H, W] each summing to 1, background bool
    [Q, H, W] (the peak's class background)."""
    n = membership.shape[1]
    q = len(prms)
    flat = segments.ravel()
    sizes = region_sizes(segments).astype(np.float64)
    inside_sp = np.array([np.bincount(flat, prms[i].ravel().astype(np.float64), minlength=n)
                          for i in range(q)]).reshape(q, n).T
    bg_sp = np.array([np.bincount(flat, background[i].ravel().astype(np.float64), minlength=n)
                      for i in range(q)]).reshape(q, n).T
    member = membership.astype(np.float64)
    area = member @ sizes
    on_contour = contour_mass(membership, segments, prms, cfg["contour_width"])
    scores = cfg["balance"] * (member @ inside_sp) + on_contour - cfg["penalty"] * (member @ bg_sp)
    low, high = cfg["size_limit"]
    scores[(area < low * segments.size) | (area >= high * segments.size)] = -np.inf
    return scores


def class_background(responses: np.ndarray, factor: float) -> np.ndarray:
    """bool [K, H, W]: pixels whose class response is below factor x the map's mean."""
    return responses < factor * responses.mean(axis=(1, 2), keepdims=True)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def instance_nms(scores: np.ndarray, masks: np.ndarray, threshold: float) -> list[int]:
    """Indices kept by greedy NMS, best first: an instance whose mask IoU with one already
    kept is >= threshold is dropped (across classes, as the paper's code)."""
    kept = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if all(mask_iou(masks[i], masks[j]) < threshold for j in kept):
            kept.append(int(i))
    return kept


def semantic_mask(masks: np.ndarray, classes: np.ndarray, scores: np.ndarray, shape) -> np.ndarray:
    """uint8 label map: each class's instances united, the higher score winning an overlap."""
    out = np.zeros(shape, np.uint8)
    for i in np.argsort(scores, kind="stable"):  # lowest first: higher scores paint over
        out[masks[i]] = classes[i]
    return out


def scaled_scoring(cfg: dict, h: int, w: int) -> dict:
    """The scoring constants for an H x W image: the paper's (for reference_size^2 inputs)
    scaled to its size, or as given when reference_size is null."""
    ref = cfg.get("reference_size")
    if not ref:
        return cfg
    return {**cfg, "penalty": cfg["penalty"] * ref * ref / (h * w),
            "contour_width": max(1, round(cfg["contour_width"] * (h * w) ** 0.5 / ref))}


def image_instances(rgb: np.ndarray, segments: np.ndarray, peaks: dict, cfg: dict) -> dict:
    """Instance masks of one image from its peaks (prm_peaks' arrays) and superpixels."""
    h, w = segments.shape
    cfg = scaled_scoring(cfg, h, w)
    n_peaks = len(peaks["peak_classes"])
    empty = {"masks": np.zeros((0, h, w), bool), "classes": np.zeros(0, np.uint8), "scores": np.zeros(0, np.float32),
             "peak_index": np.zeros(0, np.int32), "n_proposals": 0}
    if n_peaks == 0:
        return empty
    membership = merge_proposals(rgb, segments, cfg["strategies"])
    prms = peaks["prms"].astype(np.float64)
    prms /= np.maximum(prms.reshape(n_peaks, -1).sum(1), 1e-30)[:, None, None]
    background = class_background(peaks["responses"].astype(np.float32), cfg["bg_factor"])
    key_index = {int(v): k for k, v in enumerate(peaks["keys"])}
    peak_bg = background[[key_index[int(c)] for c in peaks["peak_classes"]]]
    scores = score_proposals(membership, segments, prms, peak_bg, cfg)
    best = scores.argmax(0)
    found = [q for q in range(n_peaks) if np.isfinite(scores[best[q], q])]
    if not found:
        return {**empty, "n_proposals": len(membership)}
    masks = membership[best[found]][:, segments]
    inst_scores = scores[best[found], found]
    kept = instance_nms(inst_scores, masks, cfg["nms"])
    return {"masks": masks[kept], "classes": np.asarray(peaks["peak_classes"])[found][kept].astype(np.uint8),
            "scores": inst_scores[kept].astype(np.float32), "peak_index": np.asarray(found, np.int32)[kept],
            "n_proposals": len(membership)}


def run(*, peak_path, superpixel_path, cfg: dict, code_hash: str, split: str, shard: str, out_path) -> None:
    """Stage prm_instances: per image instance_masks uint8 [I, H, W] (0/1), instance_classes
    [I] (1..C), instance_scores [I], instance_peaks [I] (the peak each came from) and `mask`,
    the semantic label map (row `prm`)."""
    from .imageio import ImageReadError, read_image

    n_instances, n_proposals, n_images = 0, 0, 0
    with ArtifactReader(peak_path, stage="prm_peaks") as p_in, \
            ArtifactReader(superpixel_path, stage="superpixels") as s_in, \
            ArtifactWriter(out_path, stage="prm", split=split, shard=shard, classes=p_in.classes(), params=cfg,
                           code_hash=code_hash) as out:
        for image_id in progress(p_in.image_ids(), desc=f"prm_instances {split}/{shard}", unit="img"):
            attrs = p_in.image_attrs(image_id)
            peaks = p_in.read(image_id, "peak_classes", "prms", "responses", "keys")
            if image_id not in s_in:
                s_in.fail(image_id, "no superpixels for an image that has peaks")
            segments = s_in.read(image_id, "superpixels")["superpixels"]
            try:
                rgb = read_image(attrs["image_path"])
            except ImageReadError as e:  # it was readable when its peaks were made
                raise ImageReadError(f"{image_id}: {e}") from None
            if segments.shape != rgb.shape[:2]:
                s_in.fail(image_id, f"superpixels {segments.shape} and image {rgb.shape[:2]} differ in size")
            found = image_instances(rgb, segments, peaks, cfg)
            n_instances += len(found["classes"])
            n_proposals += found["n_proposals"]
            n_images += 1
            out.add(image_id, attrs, mask=semantic_mask(found["masks"], found["classes"], found["scores"],
                                                        segments.shape),
                    instance_masks=found["masks"].astype(np.uint8), instance_classes=found["classes"],
                    instance_scores=found["scores"], instance_peaks=found["peak_index"])
    log.info("%s: %d instances in %d images (%.0f proposals per image)", shard, n_instances, n_images,
             n_proposals / max(n_images, 1))
