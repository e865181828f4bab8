"""Where a run's time went: the wall time of every job, from the files of Snakemake's
`benchmark:` directive (results/benchmarks/<rule>/<wildcards>.tsv, one per job), summed per
stage (rule) and per method. Printed by `make benchmark` and `python -m pipeline stage-times`.
A job that ran more than once (a rerun) counts with its last run only."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from .summary import aligned

# segmenters trained inside a method's rounds (their jobs count for that method)
ROUND_SEGMENTER_PREFIXES = {"mcof_pixelnet_r": "MCOF", "selftrain_r": "MCOF"}


def method_of(rule: str, wildcards: tuple[str, ...]) -> str:
    """The method a job serves, from its rule and the wildcard values in its benchmark path."""
    first = wildcards[0] if wildcards else ""
    if rule in ("synthetic_data", "manifest", "manifest_shard"):
        return "data"
    if rule in ("train_classifier",) or (rule == "make_cams" and first == "cam"):
        return "CAM"
    # a method's own AffinityNet (eps_affinity, sccam_affinity) counts for the method
    own = rule in ("affinity_labels", "train_affinity") and first != "affinity"
    if rule.startswith("sccam") or rule == "train_sccam" or (rule == "make_cams" or own) and first.startswith("sccam"):
        return "SC-CAM"
    eps_rules = ("saliency", "saliency_detector", "train_eps", "eps_ablation")
    if rule in eps_rules or (rule == "make_cams" or own) and first.startswith("eps"):
        return "saliency and EPS"
    if rule.startswith("mcof") or rule == "train_regionnet":
        return "MCOF"
    if rule == "superpixels":
        return "superpixels (MCOF, PRM)"
    if rule.startswith("prm") or rule == "train_prm":
        return "PRM"
    if rule in ("affinity_labels", "train_affinity", "random_walk") or (rule == "crf_masks" and first == "rw"):
        return "random walk"
    if rule in ("train_segmenter", "segment", "crf_masks", "segmenter_ablation"):
        for prefix, method in ROUND_SEGMENTER_PREFIXES.items():
            if first.startswith(prefix):
                return method
        return "segmenters"
    return "evaluation and report"


def job_times(results_dir) -> list[dict]:
    """One row per job: rule, wildcards, method, seconds, max_rss (MB, when measured)."""
    root = Path(results_dir) / "benchmarks"
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        parts = path.relative_to(root).with_suffix("").parts
        with open(path, newline="") as f:
            lines = list(csv.DictReader(f, delimiter="\t"))
        if not lines:
            continue
        last = lines[-1]
        rss = last.get("max_rss", "")
        rows.append({"rule": parts[0], "wildcards": parts[1:], "method": method_of(parts[0], parts[1:]),
                     "seconds": float(last["s"]), "max_rss": float(rss) if rss not in ("", "-", "NA") else None})
    return rows


def time_table(results_dir) -> str:
    """Wall time summed per stage and per method (the sum of the jobs' times: with several cores
    the run itself takes less), aligned for the terminal."""
    rows = job_times(results_dir)
    if not rows:
        return f"no benchmark files under {Path(results_dir) / 'benchmarks'}"
    total = sum(r["seconds"] for r in rows)

    def block(key: str, title: str) -> str:
        seconds, jobs = defaultdict(float), defaultdict(int)
        for r in rows:
            seconds[r[key]] += r["seconds"]
            jobs[r[key]] += 1
        cells = [[title, "jobs", "seconds", "share"]]
        cells += [[name, str(jobs[name]), f"{s:.1f}", f"{100 * s / total:.1f} %"]
                  for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])]
        cells.append(["total", str(len(rows)), f"{total:.1f}", "100.0 %"])
        return aligned(cells)

    return block("method", "method") + "\n\n" + block("rule", "stage (rule)")
