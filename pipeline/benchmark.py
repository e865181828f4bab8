"""`python -m pipeline benchmark`: the numbers of docs/results.md, measured in one run.

1. Wall time of the default workflow from scratch in a fresh run directory, and of an
   immediate second run (which must find nothing to do).
2. CAM stage: images per second, and achieved FLOP/s (convolution and matmul FLOPs counted
   by torch's FlopCounterMode) against this machine's fp32 matmul FLOP/s, measured in the
   same process with the same threads.
3. Training throughput (from the classifier's, AffinityNet's and the segmenters' histories;
   segmenters in iterations per second too), the CAM mIoU with its best background threshold,
   and the rows of the later stages (from results/metrics).
4. Segmenter inference: images per second of multi-scale + flip prediction (stage segment).
5. Each backbone's training and CAM speed at VOC size (pipeline/benchmark_backbones.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _snakemake(workdir: Path, cores: int, configfile: str | None, log: Path) -> float:
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", str(cores)]
    if configfile:
        cmd += ["--configfile", str(Path(configfile).resolve())]
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake failed ({proc.returncode}); see {log}")
    return seconds


def matmul_flops(threads: int, n: int = 2048, seconds: float = 2.0) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def _eval_images(workdir: Path, cfg: dict, n_images: int):
    from . import manifest as mf
    from .imageio import read_image

    shards = sorted((workdir / f"results/manifest/{cfg['dataset']['eval_split']}").glob("*.tsv"))
    records = sorted((r for p in shards for r in mf.read_tsv(p)), key=lambda r: r.image_id)[:n_images]
    return [(read_image(workdir / r.image if not os.path.isabs(r.image) else r.image), r) for r in records]


def cam_throughput(workdir: Path, cfg: dict, threads: int, n_images: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .make_cams import multiscale_cams
    from .nets import load_classifier

    torch.set_num_threads(threads)
    model, _ = load_classifier(workdir / "results/classifier/model.pt", forward_only=True)  # as make_cams runs it
    images = [(rgb, [v - 1 for v in r.labels]) for rgb, r in _eval_images(workdir, cfg, n_images)]
    scales, flip = cfg["cams"]["scales"], cfg["cams"]["flip"]
    for rgb, keys in images[:2]:  # warm-up
        multiscale_cams(model, rgb, keys, scales, flip)
    start = time.perf_counter()
    for rgb, keys in images:
        multiscale_cams(model, rgb, keys, scales, flip)
    seconds = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        for rgb, keys in images:
            multiscale_cams(model, rgb, keys, scales, flip)
    flops = counter.get_total_flops()
    pixels = sum(rgb.shape[0] * rgb.shape[1] for rgb, _ in images) / len(images)
    return {"images": len(images), "mean_pixels": pixels, "images_per_s": len(images) / seconds,
            "flops_per_image": flops / len(images), "achieved_flops": flops / seconds}


def segment_throughput(workdir: Path, model_path: Path, cfg: dict, threads: int, n_images: int) -> dict:
    import torch

    from .nets import load_segmenter
    from .segment import segment_image

    torch.set_num_threads(threads)
    model, _ = load_segmenter(model_path, forward_only=True)  # as segment runs it
    images = _eval_images(workdir, cfg, n_images)
    scales, flip = cfg["segmenter"]["test_scales"], cfg["segmenter"]["test_flip"]
    for rgb, _ in images[:2]:  # warm-up
        segment_image(model, rgb, scales, flip)
    start = time.perf_counter()
    for rgb, _ in images:
        segment_image(model, rgb, scales, flip)
    return {"images": len(images), "images_per_s": len(images) / (time.perf_counter() - start)}


def main(args) -> dict:
    from .config import load_file

    cfg = load_file(args.configfile or REPO / "config" / "config.yaml")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wsss-benchmark-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out = {"workdir": str(workdir), "cores": args.cores, "cpu_count": os.cpu_count()}
    if not args.skip_workflow:
        print(f"running the workflow in {workdir} on {args.cores} cores ...", flush=True)
        out["workflow_first_run_s"] = _snakemake(workdir, args.cores, args.configfile, workdir / "benchmark-run1.log")
        out["workflow_second_run_s"] = _snakemake(workdir, args.cores, args.configfile, workdir / "benchmark-run2.log")
        if "Nothing to be done" not in (workdir / "benchmark-run2.log").read_text():
            out["warning"] = "the second run did work: the workflow is not idempotent"
    history = json.loads((workdir / "results/classifier/history.json").read_text())["epochs"]
    out["train_images_per_s"] = sum(e["images_per_s"] for e in history) / len(history)
    out["cam"] = cam_throughput(workdir, cfg, args.cores, args.cam_images)
    out["matmul_flops"] = matmul_flops(args.cores)
    out["cam"]["share_of_matmul"] = out["cam"]["achieved_flops"] / out["matmul_flops"]
    metrics = workdir / "results/metrics/cam.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        out["cam_miou"], out["cam_best_threshold"], out["cam_split"] = m["miou"], m["best_threshold"], m["split"]
    affinity = workdir / "results/affinity/history.json"
    if affinity.is_file():
        history = json.loads(affinity.read_text())["epochs"]
        out["affinity_images_per_s"] = sum(e["images_per_s"] for e in history) / len(history)
    out["segmenters"] = {}
    for history_path in sorted((workdir / "results/segmenter").glob("*/history.json")):
        name = history_path.parent.name
        history = json.loads(history_path.read_text())["epochs"]
        images_per_s = sum(e["images_per_s"] for e in history) / len(history)
        out["segmenters"][name] = {"train_images_per_s": images_per_s,
                                   "train_iterations_per_s": images_per_s / cfg["segmenter"]["batch_size"]}
    if out["segmenters"]:
        first = next(iter(out["segmenters"]))
        out["segment"] = segment_throughput(workdir, workdir / f"results/segmenter/{first}/model.pt", cfg, args.cores,
                                            args.cam_images)
    out["stages"] = {}
    for stage in ("affinity_labels", "rw", "rw_crf", *(f"deeplab_{h}{crf}" for h in cfg["segmenter"]["heads"]
                                                       for crf in ("", "_crf")), "fully_supervised"):
        path = workdir / f"results/metrics/{stage}.json"
        if path.is_file():
            m = json.loads(path.read_text())
            out["stages"][stage] = {k: m.get(k) for k in ("split", "miou", "precision", "coverage",
                                                           "sweep_best_threshold", "sweep_best_miou")}

    rows = []
    if "workflow_first_run_s" in out:
        rows += [("workflow, first run (wall)", f"{out['workflow_first_run_s']:.1f} s"),
                 ("workflow, immediate second run (wall)", f"{out['workflow_second_run_s']:.1f} s")]
    c = out["cam"]
    rows += [("classifier training", f"{out['train_images_per_s']:.1f} images/s"),
             (f"make_cams ({len(cfg['cams']['scales'])} scales{' x2 flip' if cfg['cams']['flip'] else ''}, "
              f"~{c['mean_pixels'] ** 0.5:.0f} px images)", f"{c['images_per_s']:.2f} images/s"),
             ("make_cams FLOPs per image", f"{c['flops_per_image'] / 1e9:.2f} GFLOP"),
             ("make_cams achieved", f"{c['achieved_flops'] / 1e9:.1f} GFLOP/s"),
             ("torch fp32 matmul 2048^3, same threads", f"{out['matmul_flops'] / 1e9:.1f} GFLOP/s"),
             ("make_cams share of matmul FLOP/s", f"{100 * c['share_of_matmul']:.0f} %")]
    if "cam_miou" in out:
        rows.append((f"CAM mIoU on {out['cam_split']} (best background threshold)",
                     f"{100 * out['cam_miou']:.1f} % at {out['cam_best_threshold']:.2f}"))
    if "affinity_images_per_s" in out:
        rows.append(("AffinityNet training", f"{out['affinity_images_per_s']:.1f} images/s"))
    for name, m in out["segmenters"].items():
        rows.append((f"segmenter training ({name})", f"{m['train_iterations_per_s']:.2f} iterations/s "
                                                     f"({m['train_images_per_s']:.1f} images/s)"))
    if "segment" in out:
        seg = cfg["segmenter"]
        rows.append((f"segment ({len(seg['test_scales'])} scales{' x2 flip' if seg['test_flip'] else ''})",
                     f"{out['segment']['images_per_s']:.2f} images/s"))
    for stage, m in out["stages"].items():
        value = f"{100 * m['miou']:.1f} %"
        if stage == "affinity_labels":
            value += f" on decided pixels; precision {100 * m['precision']:.1f} %, coverage {100 * m['coverage']:.1f} %"
        rows.append((f"{stage} mIoU on {m['split']}", value))
    width = max(len(r[0]) for r in rows)
    print(f"\nbenchmark ({args.cores} threads, {out['cpu_count']} CPUs visible, run directory {workdir})")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    if "warning" in out:
        print(f"  WARNING: {out['warning']}")
    from .stage_times import job_times, time_table

    out["job_times"] = [{**r, "wildcards": list(r["wildcards"])} for r in job_times(workdir / "results")]
    print(f"\nwall time per method and per stage, summed over jobs (results/benchmarks/):\n"
          f"{time_table(workdir / 'results')}")
    if not args.skip_backbones:
        from .benchmark_backbones import DEFAULT_BACKBONES, main as backbone_speeds

        print()
        out["backbones"] = backbone_speeds(
            argparse.Namespace(cores=args.cores, backbones=DEFAULT_BACKBONES, seconds=5.0))
    (workdir / "benchmark.json").write_text(json.dumps(out, indent=1))
    return out
