"""Shared fixtures: tiny configs, the VOC sample (skipped when absent), a Snakemake runner."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
VOC_SAMPLE = Path(os.environ.get("VOC_SAMPLE", REPO.parent / "shared" / "data" / "voc2012-sample"))
VOC_ROOT = VOC_SAMPLE / "VOCdevkit" / "VOC2012"

# A workflow small enough for a test: 40 tiny images, one short epoch, one shard (each shard
# is one more job per stage and split: a tiny job is mostly start-up).
TINY = {
    "dataset": {"n_shards": 1,
                "synthetic": {"n_images": {"train": 24, "val": 16}, "min_size": 56, "max_size": 72}},
    "backbone": {"name": "resnet18", "weights": "none"},
    "classifier": {"epochs": 1, "batch_size": 8, "crop_size": 56, "lr": 0.05,
                   "head_lr_mult": 1, "color_jitter": {"hue": 0.0}},
    "cams": {"scales": [1.0, 0.5]},
    "affinity": {"init_from_classifier": True, "epochs": 1, "batch_size": 8, "crop_size": 56,
                 "lr": 0.01, "color_jitter": {"hue": 0.0}},
    "segmenter": {"init_from_classifier": True, "iterations": 3, "batch_size": 8, "crop_size": 56,
                  "lr": 0.01, "test_scales": [1.0]},
    "sccam": {"k": 2, "rounds": 2, "epochs": 1, "init_from_previous": True, "n_init": 2, "embedding": "pca",
              "ablation_k": [1, 2]},
    "eps": {"epochs": 1, "init_from_classifier": True, "ablation_tau": [0.4, 0.6]},
    "mcof": {"rounds": 1, "regionnet": {"epochs": 2}},
    "prm": {"epochs": 1, "init_from_classifier": True},
}


def deep_update(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(path: Path, extra: dict | None = None, base: dict = TINY) -> Path:
    path.write_text(yaml.safe_dump(deep_update(base, extra or {})))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True, timeout: int = 600):
    """Run the repository's workflow in `workdir`; returns the CompletedProcess (output merged)."""
    # --max-threads 1: two one-thread jobs at once; a tiny test job is mostly interpreter and
    # import start-up, which a second thread does not speed up (the tiny run: 460 s -> 303 s on 2 cores)
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", "--max-threads", "1", *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a (dry) run; {} when nothing is to be done."""
    jobs = {}
    if "Job stats:" not in output:
        return jobs
    table = output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def planned_job_details(output: str) -> list[dict]:
    """Every job of a dry run: {"rule", "input": [...], "output": [...], "wildcards": {...}}."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", output):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if not head:
            continue
        job = {"rule": head.group(1), "input": [], "output": [], "wildcards": {}}
        for key, value in re.findall(r"^    (input|output|wildcards): (.*)$", block, flags=re.M):
            items = [v.strip() for v in value.split(", ")]
            job[key] = dict(i.split("=", 1) for i in items) if key == "wildcards" else items
        jobs.append(job)
    return jobs


@pytest.fixture
def voc_root():
    if not VOC_ROOT.is_dir():
        pytest.skip(f"VOC sample not found at {VOC_SAMPLE} (set VOC_SAMPLE to its folder)")
    return VOC_ROOT


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """24 train + 8 val synthetic images on disk with their manifests: {split: manifest path}."""
    from pipeline.datasets import synthetic
    from pipeline.manifest import write_tsv

    root = tmp_path_factory.mktemp("synthetic")
    cfg = {"seed": 0, "n_images": {"train": 24, "val": 8}, "min_size": 48, "max_size": 64, "context_prob": 0.9}
    out = {}
    for split in ("train", "val"):
        synthetic.generate(cfg, split, root)
        out[split] = root / f"{split}.tsv"
        write_tsv(synthetic.manifest(cfg, split, root), out[split])
    return out
