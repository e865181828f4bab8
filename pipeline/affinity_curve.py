"""AffinityNet's learning curve: how much the walk gains from more training photos.

The run's training images are split once into two parts, A and B (a fixed shuffle; halves unless
`--held-out` makes B smaller, A then taking the rest after the default half's images). AffinityNets
are trained with the run's `affinity` recipe on the run's own affinity labels of nested subsets of
A (the first n images of A for each size n), under each seed, each for about the same number of
steps as the run's AffinityNet (its epochs times the split's size / n), so that a larger subset
means more photos, not more training; then each is checked on B, which none of them saw, as
`affinity-check --walk` checks one: the AUC of same / different ground-truth pairs and the walk of
the run's CAMs at every length, best over the background score, beside the CAMs' own best on B.
A size equal to the whole split trains on A and B together (B seen in training, as the run's own
network, for comparison). A smaller B (say a quarter) lets A grow past half with B still unseen,
at the cost of a noisier check.

    python -m pipeline affinity-curve --results results --configfile <the run's config> \
        --sizes 41 82 165 [--seeds 0 1 2] [--logt 4 5 6] [--held-out 83] [--out <results>/affinity_curve]

Writes <out>/n<size>_s<seed>/ (the network, its history, the recipe it was trained with) and
<out>/curve.tsv (0..1); prints the table and each size's mean +- sd over the seeds. A network
already in <out> is checked again, not retrained, when its recipe is the one asked for; another
recipe stops the command before any training (a new recipe wants a new <out>).
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np

from . import manifest as mf
from .claims import mean_sd
from .summary import aligned, write_rows

SPLIT_SEED = 12345  # A and B depend on the split alone, not on the seeds of the networks
log = logging.getLogger(__name__)


def a_and_b(records: list[mf.Record], held_out: int | None = None) -> tuple[list[mf.Record], list[mf.Record]]:
    """(A, B): the records shuffled once (SPLIT_SEED) and cut in two, B the first `held_out` (default
    half), each in the shuffled order (so that A[:n] is a random subset and A[:n] lies within A[:m]
    for n < m). A smaller B keeps the default A first and appends what the default B leaves, so
    that the sizes up to half train on the same images whatever B is."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(records))
    half = len(records) // 2
    held_out = half if held_out is None else held_out
    if not 1 <= held_out <= half:
        raise ValueError(f"held out {held_out}: the curve checks on 1 to {half} images of the split's {len(records)}")
    a = np.concatenate([order[half:], order[held_out:half]])
    return [records[i] for i in a], [records[i] for i in order[:held_out]]


def training_images(records: list[mf.Record], size: int, held_out: int | None = None) -> list[mf.Record]:
    """The images a network of `size` trains on: the first `size` of A, or every image when `size`
    is the split's size; ValueError for any other size."""
    a, _ = a_and_b(records, held_out)
    if size == len(records):
        return list(records)
    if not 1 <= size <= len(a):
        raise ValueError(f"size {size}: a curve trains on 1 to {len(a)} images of A, or on all {len(records)} "
                         "images of the split")
    return a[:size]


def equal_step_epochs(epochs: int, total: int, size: int) -> int:
    """Epochs over `size` images that take about as many steps as `epochs` over `total`."""
    return max(1, round(epochs * total / size))


def recipe(cfg: dict, inputs: dict, images: list[mf.Record], seed: int, epochs: int) -> dict:
    """What a network of the curve is trained with, flat (so that a difference names its key);
    `inputs`: the files it learns from and its code, by content (training_inputs), so that a
    moved results folder keeps its networks and a rewritten one does not."""
    return {**inputs, "images": [r.image_id for r in images], "seed": seed,
            **{f"affinity.{k}": v for k, v in {**cfg["affinity"], "epochs": epochs}.items()}}


def training_inputs(classifier: Path | None, labels: list[Path]) -> dict:
    """The run's classifier (None where AffinityNet does not start from it, as its own run_hash
    has it) and affinity labels by size and time, and the hash of the training code."""
    from .provenance import code_hash, file_id

    return {"classifier": file_id(classifier) if classifier else None,
            "affinity_labels": [file_id(p) for p in labels], "code": code_hash("pipeline.train_affinity")}


def check_recipe(folder: Path, wanted: dict) -> None:
    """ValueError when `folder` holds a network trained with another recipe than `wanted`; a folder
    from before recipes were kept is reused with a warning."""
    path = folder / "recipe.json"
    if path.is_file():
        try:
            kept = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not JSON ({e}); remove the folder to train its network again") from None
        differ = sorted(k for k in wanted.keys() | kept.keys() if kept.get(k) != wanted.get(k))
        if differ:
            raise ValueError(f"{folder}: its network was trained with another recipe ({', '.join(differ)} "
                             "differ): give a new --out, or remove the folder to train it again")
    elif (folder / "model.pt").is_file():
        log.warning("%s: a network without recipe.json, reused unchecked", folder)


def cams_best(records: list[mf.Record], cams, n_classes: int, grid, source) -> tuple[float, float]:
    """(best mIoU, its background score) of the run's CAMs (`cams`: image id -> (CAMs, keys), as
    affinity_check.walk_inputs reads them from the folder `source`) on the records' ground truth,
    over the background scores of `grid`."""
    from .evaluate import ThresholdSweep, load_ground_truth

    sweep = ThresholdSweep(n_classes, grid)
    for r in records:
        found = cams(r.image_id)
        if found is None:  # an image the CAM stage skipped (see its problems file): walked by no network either
            log.warning("no CAMs for %s: left out of the CAMs' score on B", r.image_id)
            continue
        sweep.add(load_ground_truth(r, n_classes), *found)
    try:
        scores, best = sweep.curve()
    except ValueError as e:  # nothing to score: say where the CAMs were looked for
        raise ValueError(f"{source}: no CAMs of the {len(records)} images of B to score ({e})") from None
    return scores[best], float(grid[best])


def run(*, results: Path, cfg: dict, classes, sizes, seeds, logts, out: Path, device: str = "cpu",
        held_out: int | None = None) -> list[dict]:
    """Train (or reuse, where <out>/n<size>_s<seed>/model.pt exists) and check every network of the
    curve; returns its rows (size, seed, epochs, auc, mean W, the walks' best mIoU per length)."""
    from . import train_affinity
    from .affinity_check import check, walk_inputs
    from .atomic import write_text
    from .mask_folders import read_manifest

    split = cfg["dataset"]["train_split"]
    records = read_manifest(results, split)
    images = {size: training_images(records, size, held_out) for size in sizes}  # each size checked first
    _, b = a_and_b(records, held_out)
    labels = sorted((results / "affinity_labels" / split).glob("*.h5"))
    if not labels:
        raise FileNotFoundError(f"{results / 'affinity_labels' / split}: no affinity labels to train on "
                                "(`snakemake` makes them in a run with the random walk)")
    classifier = results / "classifier" / "model.pt"
    inputs = training_inputs(classifier if cfg["affinity"]["init_from_classifier"] else None, labels)
    plan = {(size, seed): recipe(cfg, inputs, images[size], seed,
                                 equal_step_epochs(cfg["affinity"]["epochs"], len(records), size))
            for seed in seeds for size in sizes}
    for (size, seed), wanted in plan.items():  # every network kept under `out` checked before the first trains
        check_recipe(out / f"n{size}_s{seed}", wanted)
    rows = []
    with contextlib.ExitStack() as stack:
        walk = {**walk_inputs(results, split, stack), "logts": logts}  # the run's CAMs and walk, checked first
        cam_miou, cam_score = cams_best(b, walk["cams"], len(classes) + 1, walk["grid"], results / "cam" / split)
        log.info("the CAMs on B (%d images): best %.1f %% at %.2f", len(b), 100 * cam_miou, cam_score)
        for seed in seeds:
            for size in sizes:
                folder = out / f"n{size}_s{seed}"
                folder.mkdir(parents=True, exist_ok=True)
                model = folder / "model.pt"
                epochs = plan[size, seed]["affinity.epochs"]
                if not model.is_file():
                    write_text(folder / "recipe.json", json.dumps(plan[size, seed]))
                    mf.write_tsv(images[size], folder / "manifest.tsv")
                    train_affinity.run(
                        manifest_path=folder / "manifest.tsv", label_paths=labels, classes=classes,
                        cfg={**cfg["affinity"], "epochs": epochs}, seed=seed,
                        compute={**cfg["compute"], "device": device}, code_hash=inputs["code"],
                        classifier_path=classifier, model_path=model,
                        history_path=folder / "history.json", problems_path=folder / "problems.tsv",
                        checkpoint_path=folder / "checkpoint.pt")
                s = check(model, b, None, device, walk)
                row = {"size": size, "seed": seed, "epochs": epochs, "b_images": len(b), "b_seen": size == len(records),
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
