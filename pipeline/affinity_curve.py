"""AffinityNet's learning curve: how much the walk gains from more training photos.

The run's training images are split once into two halves, A and B (a fixed shuffle). AffinityNets
are trained with the run's `affinity` recipe on the run's own affinity labels of nested subsets of
A (the first n images of A for each size n), under each seed, each for about the same number of
steps as the run's AffinityNet (its epochs times the split's size / n), so that a larger subset
means more photos, not more training; then each is checked on B, which none of them saw, as
`affinity-check --walk` checks one: the AUC of same / different ground-truth pairs and the walk of
the run's CAMs at every length, best over the background score, beside the CAMs' own best on B.
A size equal to the whole split trains on A and B together (B seen in training, as the run's own
network, for comparison).

    python -m pipeline affinity-curve --results results --configfile <the run's config> \
        --sizes 41 82 165 [--seeds 0 1 2] [--logt 4 5 6] [--out <results>/affinity_curve]

Writes <out>/n<size>_s<seed>/ (the network, its history) and <out>/curve.tsv (0..1); prints the
table and each size's mean +- sd over the seeds. A network already in <out> is checked again, not
retrained: a new recipe wants a new <out>.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from . import manifest as mf
from .claims import mean_sd
from .summary import aligned, write_rows

SPLIT_SEED = 12345  # the halves depend on the split alone, not on the seeds of the networks
log = logging.getLogger(__name__)


def halves(records: list[mf.Record]) -> tuple[list[mf.Record], list[mf.Record]]:
    """(A, B): the records shuffled once (SPLIT_SEED) and cut in two, B the first half, each half
    in the shuffled order (so that A[:n] is a random subset and A[:n] lies within A[:m] for n < m)."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(records))
    half = len(records) // 2
    return [records[i] for i in order[half:]], [records[i] for i in order[:half]]


def training_images(records: list[mf.Record], size: int) -> list[mf.Record]:
    """The images a network of `size` trains on: the first `size` of half A, or every image when
    `size` is the split's size; ValueError for any other size."""
    a, _ = halves(records)
    if size == len(records):
        return list(records)
    if not 1 <= size <= len(a):
        raise ValueError(f"size {size}: a curve trains on 1 to {len(a)} images of half A, or on all {len(records)} "
                         "images of the split")
    return a[:size]


def equal_step_epochs(epochs: int, total: int, size: int) -> int:
    """Epochs over `size` images that take about as many steps as `epochs` over `total`."""
    return max(1, round(epochs * total / size))


def cams_best(records: list[mf.Record], cams, n_classes: int, grid) -> tuple[float, float]:
    """(best mIoU, its background score) of the run's CAMs (`cams`: image id -> (CAMs, keys), as
    affinity_check.walk_inputs reads them) on the records' ground truth, over the background
    scores of `grid`."""
    from .evaluate import ThresholdSweep, load_ground_truth

    sweep = ThresholdSweep(n_classes, grid)
    for r in records:
        found = cams(r.image_id)
        if found is None:  # an image the CAM stage skipped (see its problems file): walked by no network either
            log.warning("no CAMs for %s: left out of the CAMs' score on B", r.image_id)
            continue
        sweep.add(load_ground_truth(r, n_classes), *found)
    scores, best = sweep.curve()
    return scores[best], float(grid[best])


def run(*, results: Path, cfg: dict, classes, sizes, seeds, logts, out: Path, device: str = "cpu") -> list[dict]:
    """Train (or reuse, where <out>/n<size>_s<seed>/model.pt exists) and check every network of the
    curve; returns its rows (size, seed, epochs, auc, mean W, the walks' best mIoU per length)."""
    from . import train_affinity
    from .affinity_check import check, walk_inputs
    from .mask_folders import read_manifest

    split = cfg["dataset"]["train_split"]
    records = read_manifest(results, split)
    for size in sizes:  # every size checked before the first network trains
        training_images(records, size)
    _, held_out = halves(records)
    labels = sorted((results / "affinity_labels" / split).glob("*.h5"))
    if not labels:
        raise FileNotFoundError(f"{results / 'affinity_labels' / split}: no affinity labels to train on "
                                "(`snakemake` makes them in a run with the random walk)")
    rows = []
    with contextlib.ExitStack() as stack:
        walk = {**walk_inputs(results, split, stack), "logts": logts}  # the run's CAMs and walk, checked first
        cam_miou, cam_score = cams_best(held_out, walk["cams"], len(classes) + 1, walk["grid"])
        log.info("the CAMs on half B (%d images): best %.1f %% at %.2f", len(held_out), 100 * cam_miou, cam_score)
        for seed in seeds:
            for size in sizes:
                folder = out / f"n{size}_s{seed}"
                folder.mkdir(parents=True, exist_ok=True)
                model = folder / "model.pt"
                epochs = equal_step_epochs(cfg["affinity"]["epochs"], len(records), size)
                if not model.is_file():
                    mf.write_tsv(training_images(records, size), folder / "manifest.tsv")
                    train_affinity.run(
                        manifest_path=folder / "manifest.tsv", label_paths=labels, classes=classes,
                        cfg={**cfg["affinity"], "epochs": epochs}, seed=seed,
                        compute={**cfg["compute"], "device": device}, code_hash="affinity-curve",
                        classifier_path=results / "classifier" / "model.pt", model_path=model,
                        history_path=folder / "history.json", problems_path=folder / "problems.tsv",
                        checkpoint_path=folder / "checkpoint.pt")
                s = check(model, held_out, None, device, walk)
                row = {"size": size, "seed": seed, "epochs": epochs, "b_seen": size == len(records),
                       "auc": s["auc"], "mean_w_same": s["mean_w_same"], "mean_w_different": s["mean_w_different"],
                       "cam_b": cam_miou}
                for (_, logt), walks in s["walks"].items():
                    row[f"walk_{2 ** logt}"] = walks["as trained"][0]
                    row[f"full_links_{2 ** logt}"] = walks["full links"][0]
                rows.append(row)
                log.info("n %d seed %d: AUC %.3f, the walk %s", size, seed, s["auc"],
                         ", ".join(f"{100 * v:.1f} %" for k, v in row.items() if k.startswith("walk_")))
    write_rows(rows, list(rows[0]), out / "curve.tsv")
    return rows


def table(rows: list[dict]) -> str:
    """Each size's mean +- sd over its seeds (AUC; the walk's best mIoU and its gain over the CAMs
    on B, in points, per length)."""
    lengths = [k for k in rows[0] if k.startswith("walk_")]

    def spread(values, scale=1.0, digits=3, sign=""):
        m, sd = mean_sd([scale * v for v in values])
        return f"{m:{sign}.{digits}f}" + ("" if sd is None else f" +- {sd:.{digits}f}")

    cells = [["images", "seeds", "epochs", "AUC"] + [f"walk {k[5:]} steps (over cam)" for k in lengths]]
    for size in sorted({r["size"] for r in rows}):
        group = [r for r in rows if r["size"] == size]
        label = f"{size} (B seen)" if group[0]["b_seen"] else str(size)
        cells.append([label, str(len(group)), str(group[0]["epochs"]), spread([r["auc"] for r in group])]
                     + [f"{spread([r[k] for r in group], 100, 1)} "
                        f"({spread([r[k] - r['cam_b'] for r in group], 100, 1, '+')})" for k in lengths])
    return aligned(cells)
