"""Stage random_walk: CAMs propagated over AffinityNet affinities (PSA / IRN), with sparse products.

On the feature grid (stride 8, N = h * w cells) the affinity of cells i and j within the
radius (dy^2 + dx^2 < r^2, the cell itself included) is W_ij = exp(-mean_c |f_i - f_j|)^beta;
the transition T = D^-1 W (D the row sums) averages each cell over its neighbours. The CAM,
average-pooled to the grid, is propagated t = 2^logt steps: v <- T v. How background and
class maps meet (random_walk.normalisation):
  irn        every walked class map divided by the largest value over all classes of the
             image, background the constant bg_threshold (IRN, step/make_sem_seg_labels.py:
             rw_up / torch.max(rw_up), padded with sem_seg_bg_thres);
  psa        a background channel (1 - max_c CAM_c)^alpha walked with the class maps (PSA,
             infer_aff.py); no threshold;
  per_class  each walked class map divided by its own maximum, background the constant
             bg_threshold (this project's first version; not a paper's).
The scores are upsampled to the image and the mask is their argmax.

Public code builds T as a dense N x N matrix and squares it logt times (T^(2^logt) in logt
products): memory N^2 (0.5 GB for a VOC image at stride 4). Squaring a sparse T fills it in,
so here T stays sparse (at most (2r - 1)^2 entries per row, CSR) and is applied 2^logt times:
memory ~ N r^2 and time ~ 2^logt N r^2 K for K maps. `random_walk_dense` is the dense
reference the tests compare against.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import manifest as mf
from .artifacts import ArtifactReader, ArtifactWriter
from .data import to_tensor, upsample_scores
from .devices import pick_device
from .grid_pairs import neighbour_offsets, offset_slices
from .imageio import ImageReadError, read_image_sized, write_label_png
from .logs import progress
from .nets import load_affinity_net
from .problems import ProblemReport, with_output

log = logging.getLogger(__name__)


def neighbour_affinities(features: torch.Tensor, radius: int, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(W^beta [P, h, w], valid [P, h, w]) for the P = len(neighbour_offsets(radius)) offsets:
    W_p[y, x] = exp(-mean_c |f[y, x] - f[y + dy_p, x + dx_p]|)^beta, 0 where the neighbour is outside.

    W is symmetric, so each distance is computed once, for half of the offsets."""
    _, h, w = features.shape
    offsets = neighbour_offsets(radius)
    index = {d: p for p, d in enumerate(offsets)}
    f = features.permute(1, 2, 0).contiguous()  # channels last: the mean runs over contiguous memory
    out = features.new_zeros((len(offsets), h, w))
    valid = torch.zeros((len(offsets), h, w), dtype=torch.bool, device=features.device)
    for dy, dx in offsets:
        if (dy, dx) < (0, 0):  # filled as the mirror of (-dy, -dx)
            continue
        (ya, xa), (yb, xb) = offset_slices(h, w, dy, dx)
        aff = torch.exp(-beta * (f[ya, xa] - f[yb, xb]).abs_().mean(-1))  # exp(-d)^beta
        out[index[dy, dx], ya, xa] = aff
        out[index[-dy, -dx], yb, xb] = aff
        valid[index[dy, dx], ya, xa] = True
        valid[index[-dy, -dx], yb, xb] = True
    return out, valid


def transition_matrix(features: torch.Tensor, radius: int, beta: float) -> torch.Tensor:
    """Sparse CSR T = D^-1 W^beta [N, N], N = h * w; each row sums to 1."""
    return transition_from_affinities(*neighbour_affinities(features, radius, beta), radius)


def transition_from_affinities(weights: torch.Tensor, valid: torch.Tensor, radius: int) -> torch.Tensor:
    """Sparse CSR T = D^-1 W [N, N] from neighbour_affinities' (W [P, h, w], valid [P, h, w]) or
    affinities edited in that layout; each row sums to 1 (every cell needs a positive affinity)."""
    _, h, w = weights.shape
    weights = weights / weights.sum(0, keepdim=True)
    steps = torch.tensor([dy * w + dx for dy, dx in neighbour_offsets(radius)], device=weights.device)
    cols = torch.arange(h * w, device=weights.device)[:, None] + steps[None]  # [N, P], ascending per row
    valid = valid.flatten(1).T
    crow = torch.zeros(h * w + 1, dtype=torch.int64, device=weights.device)
    crow[1:] = torch.cumsum(valid.sum(1), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols[valid], weights.flatten(1).T[valid], size=(h * w, h * w),
                                       check_invariants=False)


def propagate(transition: torch.Tensor, maps: torch.Tensor, logt: int) -> torch.Tensor:
    """maps [K, h, w] after 2^logt steps of v <- T v (none to walk when K is 0)."""
    k, h, w = maps.shape
    if k == 0:
        return maps
    v = maps.reshape(k, h * w).T.contiguous()
    for _ in range(2 ** logt):
        v = torch.sparse.mm(transition, v)
    return v.T.reshape(k, h, w)


def random_walk(features: torch.Tensor, maps: torch.Tensor, radius: int, beta: float, logt: int) -> torch.Tensor:
    """The sparse random walk of maps [K, h, w] over the affinities of features [C, h, w]."""
    if maps.shape[0] == 0:  # nothing to walk: not even the transition matrix is needed
        return maps
    return propagate(transition_matrix(features, radius, beta), maps, logt)


def random_walk_dense(features: torch.Tensor, maps: torch.Tensor, radius: int, beta: float, logt: int) -> torch.Tensor:
    """Reference: the public codes' way, a dense T squared logt times (memory N^2)."""
    k, h, w = maps.shape
    n = h * w
    weights, valid = neighbour_affinities(features, radius, beta)
    t = torch.zeros((n, n), dtype=weights.dtype, device=weights.device)
    for p, (dy, dx) in enumerate(neighbour_offsets(radius)):
        i = torch.arange(n, device=t.device).view(h, w)[valid[p]]
        t[i, i + dy * w + dx] = weights[p][valid[p]]
    t /= t.sum(1, keepdim=True)
    for _ in range(logt):
        t = t @ t
    return (t @ maps.reshape(k, n).T).T.reshape(k, h, w)


NORMALISATIONS = ("irn", "psa", "per_class")


def normalise_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its own maximum (normalisation per_class)."""
    return maps / maps.flatten(1).max(1).values.clamp_min(1e-5)[:, None, None] if len(maps) else maps


def normalise_global_max(maps: torch.Tensor) -> torch.Tensor:
    """All maps divided by the largest value of any of them (IRN)."""
    return maps / maps.max().clamp_min(1e-5) if len(maps) else maps


def psa_background(cams: torch.Tensor, alpha: float) -> torch.Tensor:
    """PSA's background map (1 - max_c CAM_c)^alpha [H, W] of CAMs scaled to max 1 [K, H, W]."""
    if not len(cams):
        return cams.new_ones(cams.shape[1:])
    return (1 - cams.max(0).values.clamp(0, 1)) ** alpha


def walked_scores(features: torch.Tensor, cams: torch.Tensor, cfg: dict, radius: int) -> torch.Tensor:
    """Scores [K + 1, h, w] on the feature grid, background first, from CAMs [K, H, W] (each
    scaled to max 1) walked over the affinities of `features`, as cfg["normalisation"] says."""
    return scores_by_walk(transition_matrix(features, radius, cfg["beta"]), features.shape[1:], cams, cfg)


def scores_by_walk(transition: torch.Tensor, grid, cams: torch.Tensor, cfg: dict) -> torch.Tensor:
    """walked_scores over a given transition matrix [N, N] of the grid (h, w), N = h * w."""
    mode = cfg["normalisation"]
    if mode == "psa":
        maps = torch.cat([psa_background(cams, cfg["alpha"])[None], cams])
        return propagate(transition, F.adaptive_avg_pool2d(maps[None], grid)[0], cfg["logt"])
    small = F.adaptive_avg_pool2d(cams[None], grid)[0] if len(cams) else cams.new_zeros((0, *grid))
    walked = propagate(transition, small, cfg["logt"])
    if mode == "irn":
        walked = normalise_global_max(walked)
    elif mode == "per_class":
        walked = normalise_max(walked)
    else:
        raise ValueError(f"random_walk.normalisation: {mode!r} is not one of {', '.join(NORMALISATIONS)}")
    return torch.cat([walked.new_full((1, *grid), float(cfg["bg_threshold"])), walked])


@torch.no_grad()
def walk_image(model, rgb: np.ndarray, cams: np.ndarray, keys, cfg: dict, radius: int, device):
    """(scores [K+1, h, w] on the feature grid (walked_scores); mask uint8 [H, W] = keys[argmax]
    of the scores upsampled to the image)."""
    features = model(to_tensor(rgb).to(device)[None])[0]
    cam = torch.from_numpy(cams.astype(np.float32)).to(device)
    scores = walked_scores(features, cam, cfg, radius).cpu()
    values = np.concatenate([[0], np.asarray(keys, np.int64)]).astype(np.uint8)
    return scores, values[upsample_scores(scores, rgb.shape[:2]).argmax(0).numpy()]


def run(*, manifest_path, cam_path, model_path, cfg: dict, device: str, code_hash: str, split: str, shard: str,
        out_path, png_dir, problems_path, stage: str = "rw") -> None:
    """Walk the CAMs of one shard; `stage` names the row (rw, or sccam_rw on SC-CAM's CAMs)."""
    records = mf.read_tsv(manifest_path)
    dev = pick_device(device)
    model, saved = load_affinity_net(model_path, dev, forward_only=True)
    radius = saved["radius"]
    problems = ProblemReport(problems_path)
    png_dir = Path(png_dir)
    png_dir.mkdir(parents=True, exist_ok=True)
    log.info("%s: random walk of %d images (beta %s, %d steps, radius %d, %s normalisation) on %s", shard,
             len(records), cfg["beta"], 2 ** cfg["logt"], radius, cfg["normalisation"], dev)
    with ArtifactReader(cam_path, stage="cam") as cams_in, \
            ArtifactWriter(out_path, stage=stage, split=split, shard=shard, classes=saved["classes"],
                           params={**cfg, "radius": radius}, code_hash=code_hash) as out:
        for r in progress(with_output(records, cams_in, problems, "CAM", "make_cams"),
                          desc=f"random_walk {split}/{shard}", unit="img"):
            d = cams_in.read(r.image_id, "cams", "keys")
            try:
                rgb = read_image_sized(r.image, d["cams"].shape[1:], "CAM")
            except ImageReadError as e:
                problems.add(r.image_id, r.image, str(e))
                continue
            scores, mask = walk_image(model, rgb, d["cams"], d["keys"], cfg, radius, dev)
            out.add(r.image_id, {"image_path": r.image, "mask_path": r.mask, "height": rgb.shape[0],
                                 "width": rgb.shape[1]},
                    scores=scores.numpy().astype(np.float16), keys=np.concatenate([[0], d["keys"]]).astype(np.uint8),
                    mask=mask)
            write_label_png(png_dir / f"{r.image_id}.png", mask)
    problems.write()

