"""`python -m pipeline benchmark-dag`: the job graph at dataset scale, timed.

Builds a VOCdevkit whose train_aug split has 10,582 images and val 1,449 (VOC 2012's sizes; the
files are links to a few synthetic pictures, since a dry run never opens an image) with a labels
CSV, then times `snakemake --dry-run` of config/voc.yaml on it, once per shard count, and
prints the jobs per stage. A per-image stage is one rule for one split (and one model, such as
one SC-CAM round): it must plan at most one job per shard. Last, it counts the shards that 10
added images fall in, and checks that no existing image changes shard.
"""
from __future__ import annotations

import csv
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from . import manifest as mf

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"train_aug": 10582, "val": 1449}
PICTURES = 8  # distinct synthetic pictures the links point at
GROUP_LIMIT = 64  # jobs per per-image stage
SECONDS_LIMIT = 30.0  # dry-run wall time


def make_voc(root: Path, sizes: dict[str, int]) -> Path:
    """A VOC2012 folder with `sizes` images per split (links) and a labels CSV; returns the CSV."""
    from .config import load_file
    from .datasets import synthetic, voc
    from .imageio import write_image, write_label_png

    synthetic_cfg = load_file(str(REPO / "config" / "config.yaml"))["dataset"]["synthetic"]
    pictures = root / "pictures"
    pictures.mkdir(parents=True)
    for i in range(PICTURES):
        out = synthetic.render(synthetic_cfg, "train", i)
        write_image(pictures / f"{i}.jpg", out["image"])
        write_label_png(pictures / f"{i}.png", out["mask"])
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    labels_csv = root / "cls_labels.csv"
    with open(labels_csv, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["image_id", "split", "class_names"])
        for split, n in sizes.items():
            ids = [f"{split}_{i:06d}" for i in range(n)]
            (root / f"ImageSets/Segmentation/{split}.txt").write_text("\n".join(ids) + "\n")
            for i, image_id in enumerate(ids):
                (root / "JPEGImages" / f"{image_id}.jpg").symlink_to(pictures / f"{i % PICTURES}.jpg")
                (root / "SegmentationClassAug" / f"{image_id}.png").symlink_to(pictures / f"{i % PICTURES}.png")
                w.writerow([image_id, split, " ".join(voc.CLASSES[j] for j in {i % 20, (i * 7) % 20})])
    return labels_csv


def dry_run(workdir: Path, configfile: Path) -> tuple[float, str]:
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--configfile", str(configfile), "--cores", "all", "--dry-run"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the dry run failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    return seconds, proc.stdout


def jobs_per_stage(output: str) -> Counter:
    """(rule, wildcards other than the shard) -> planned jobs, from a dry run's job listing."""
    groups = Counter()
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if not head:
            continue
        found = re.search(r"^    wildcards: (.*)$", block, flags=re.M)
        wildcards = dict(item.split("=", 1) for item in found.group(1).split(", ")) if found else {}
        wildcards.pop("shard", None)
        groups[(head.group(1), ", ".join(f"{k}={v}" for k, v in sorted(wildcards.items())))] += 1
    return groups


def config_for(root: Path, labels_csv: Path, n_shards: int, path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "voc.yaml").read_text())
    cfg["dataset"].update(train_split="train_aug", eval_split="val", n_shards=n_shards)
    cfg["dataset"]["voc"].update(root=str(root), labels_csv=str(labels_csv),
                                 split_files={"train_aug": "ImageSets/Segmentation/train_aug.txt"})
    path.write_text(yaml.safe_dump(cfg))
    return path


def shard_stability(ids: list[str], n_shards: int, added: int = 10) -> tuple[int, int]:
    """(shards the added images fall in, existing images that changed shard)."""
    new = [f"added_{i:02d}" for i in range(added)]
    before = {r.image_id: s for s, rs in mf.split_into_shards([mf.Record(i, "", ()) for i in ids], n_shards).items()
              for r in rs}
    after = mf.split_into_shards([mf.Record(i, "", ()) for i in ids + new], n_shards)
    moved = sum(before[r.image_id] != s for s, rs in after.items() for r in rs if r.image_id in before)
    return len({mf.shard_name(mf.shard_of(i, n_shards), n_shards) for i in new}), moved


def main(args) -> None:
    shard_counts = args.shards
    with tempfile.TemporaryDirectory(prefix="wsss-dag-") as scratch:
        tmp = Path(args.workdir or scratch)
        root = tmp / "VOCdevkit" / "VOC2012"
        start = time.perf_counter()
        labels_csv = make_voc(root, SPLITS)
        print(f"VOC layout with {SPLITS['train_aug']} train_aug + {SPLITS['val']} val images (links to "
              f"{PICTURES} synthetic pictures): {time.perf_counter() - start:.1f} s")
        failures = []
        for n_shards in shard_counts:
            work = tmp / f"run{n_shards}"
            work.mkdir(exist_ok=True)
            seconds, out = dry_run(work, config_for(root, labels_csv, n_shards, tmp / f"voc{n_shards}.yaml"))
            groups = jobs_per_stage(out)
            per_rule = Counter()
            for (rule, _), n in groups.items():
                per_rule[rule] = max(per_rule[rule], n)
            (rule, wildcards), largest = groups.most_common(1)[0]
            print(f"\nn_shards {n_shards}: dry run {seconds:.1f} s (limit {SECONDS_LIMIT:.0f} s), "
                  f"{sum(groups.values())} jobs in {len(groups)} stages")
            print(f"  largest stage: {rule} [{wildcards}] with {largest} jobs (limit {GROUP_LIMIT})")
            print("  jobs of the largest stage per rule: " + ", ".join(f"{r} {n}" for r, n in sorted(per_rule.items())))
            if seconds > SECONDS_LIMIT:
                failures.append(f"n_shards {n_shards}: dry run {seconds:.1f} s > {SECONDS_LIMIT:.0f} s")
            if largest > GROUP_LIMIT:
                failures.append(f"n_shards {n_shards}: {rule} [{wildcards}] plans {largest} jobs > {GROUP_LIMIT}")
            ids = [f"train_aug_{i:06d}" for i in range(SPLITS["train_aug"])]
            touched, moved = shard_stability(ids, n_shards)
            print(f"  10 added train_aug images fall in {touched} of {n_shards} shards; "
                  f"{moved} existing images change shard")
            if moved:
                failures.append(f"n_shards {n_shards}: {moved} images changed shard")
        print("\nOK: every number within its limit" if not failures else "\nFAILED:\n  " + "\n  ".join(failures))
        if failures:
            raise SystemExit(1)
        if args.workdir:
            print(f"(kept in {tmp})")
