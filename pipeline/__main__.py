"""Command line: python -m pipeline {status,inspect,show,export-masks,evaluate-masks,export-instances,config,
labels-csv,seeds,claims,affinity-check,affinity-curve,benchmark,
stage-times,benchmark-rw,benchmark-dag,benchmark-backbones} ..."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("--version", action=VersionAction, nargs=0, help="print the version and commit, then exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("status", help="the results table; which stages are complete, stale or missing, and where")
    p.add_argument("--configfile", nargs="+", default=[], help="the run's config file(s), as given to snakemake")
    p.add_argument("--directory", default=".", help="the run's working directory (holding results/)")
    p.add_argument("--clean", action="store_true", help="also remove temporary files left behind by killed jobs")

    p = sub.add_parser("inspect", help="print the provenance, parameters and tree of an HDF5 artifact")
    p.add_argument("file")
    p.add_argument("--all", action="store_true", help="list every image group, not only the first 5")

    p = sub.add_parser("show", help="draw an image with its CAMs or masks overlaid, as PNG",
                       usage="python -m pipeline show (FILE | STAGE SPLIT) IMAGE_ID -o OUTPUT [--threshold T]")
    p.add_argument("target", nargs="+", metavar="ARG",
                   help="an artifact FILE and an IMAGE_ID, or a STAGE (cam, rw, ... or a stage folder), SPLIT and "
                        "IMAGE_ID: the shard holding the image is found in results/")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--threshold", type=float,
                   help="background threshold of the CAM label map (default: the one the stage's evaluated row "
                        "chose, else 0.15)")
    p.add_argument("--results", default="results", help="the run's results folder (STAGE SPLIT form)")

    p = sub.add_parser("export-masks", help="a stage's label maps of a split as a flat folder of PNGs with list files")
    p.add_argument("stage", help="a stage under results/ (cam, rw, rw_crf, deeplab_aspp_crf, ...) or a stage's folder")
    p.add_argument("split")
    p.add_argument("dir", help="folder to write <image_id>.png, <split>.txt and <split>_pairs.txt into")
    p.add_argument("--scores", action="store_true", help="also write the score maps as <image_id>.npy [C + 1, H, W]")
    p.add_argument("--threshold", type=float,
                   help="background threshold of a CAM stage (default: the one its evaluated row chose)")
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument("--configfile", help="the run's config, for its classes (default: the classes its artifacts name)")

    p = sub.add_parser("evaluate-masks", help="score a folder of PNG label maps against a split's ground truth")
    p.add_argument("dir", help="folder of <image_id>.png label maps (class values, 255 = ignore)")
    p.add_argument("--split", required=True)
    p.add_argument("-o", "--output", help="metrics JSON (default: <dir>/<split>.metrics.json; problems next to it)")
    p.add_argument("--results", default="results", help="the run's results folder (for the split's manifest)")
    p.add_argument("--configfile", help="the run's config, for its classes (default: the classes its artifacts name)")

    p = sub.add_parser("export-instances", help="PRM's instances of a split as COCO JSON (RLE masks, scores)")
    p.add_argument("split")
    p.add_argument("output", help="JSON file to write")
    p.add_argument("--stage", default="prm/instances", help="the instances' stage folder under results/ (or a path)")
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument("--configfile", help="the run's config, for its classes (default: the classes its artifacts name)")

    p = sub.add_parser("config", help="print a config file completed with every default (validated)")
    p.add_argument("file", nargs="?", default="config/config.yaml")

    p = sub.add_parser("labels-csv", help="write image-level labels derived from masks (VOC layout) to a CSV, once")
    p.add_argument("root", help="the VOC2012 folder")
    p.add_argument("split", help="split name, e.g. train_aug")
    p.add_argument("-o", "--output", required=True)

    p = sub.add_parser("seeds", help="run the workflow under several seeds side by side; each row's mean +- sd and "
                       "the papers' claims judged on them")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the seeds (default: 0 1 2)")
    p.add_argument("--configfile", nargs="+", default=[], help="config files (default: config/config.yaml)")
    p.add_argument("--cores", default="all", help="cores of each seed's run (default: all)")
    p.add_argument("--out", default="results/seeds", help="where seed<N>/ and the tables go (default: %(default)s)")
    p.add_argument("--parallel", action="store_true", help="start every seed's run at once (for a cluster profile)")
    p.add_argument("--no-run", action="store_true", help="only summarise the seeds' finished runs")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                   help="after --: passed to each seed's snakemake (targets, --profile, ...)")

    p = sub.add_parser("claims", help="the papers' claims judged on finished runs (each folder one seed)")
    p.add_argument("results", nargs="+", help="results folders of runs that differ only in their seed")

    p = sub.add_parser("affinity-check", help="how well a trained AffinityNet separates same-class from "
                       "different-class pixel pairs of the ground truth (AUC), before any walk")
    p.add_argument("--results", default="results", help="the run's results folder")
    p.add_argument("--model", help="the AffinityNet (default: <results>/affinity/model.pt)")
    p.add_argument("--split", help="the split whose images and masks to use (default: the run's training split)")
    p.add_argument("--max-images", type=_positive_int, help="only the first N images of the split")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the network runs (default: auto, a GPU where there is one)")
    p.add_argument("--walk", action="store_true",
                   help="also walk the run's CAMs (<results>/cam/<split>) with its walk's settings (<results>/rw/"
                        "<split>) over the trained affinities and over them put right by the ground truth")
    p.add_argument("--logt", type=_logt, nargs="+", metavar="LOGT",
                   help="with --walk: walk 2^LOGT steps for each LOGT given, the network run once (default: "
                        "the run's random_walk.logt)")
    p.add_argument("--beta", type=_beta, nargs="+", metavar="BETA",
                   help="with --walk: walk over W^BETA for each BETA given, each with every --logt (default: the "
                        "run's random_walk.beta)")

    p = sub.add_parser("affinity-curve", help="AffinityNet trained on more and more of one part of the run's "
                       "training images, each checked on the other: how much the walk gains from more photos")
    p.add_argument("--results", default="results", help="the run's results folder (its CAMs, affinity labels, walk)")
    p.add_argument("--configfile", nargs="+", required=True,
                   help="the run's config file(s), as given to snakemake: the AffinityNet recipe")
    p.add_argument("--sizes", type=_positive_int, nargs="+", required=True,
                   help="training images of each network: up to half the split (or the whole split)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="the networks' seeds (default: 0 1 2)")
    p.add_argument("--logt", type=_logt, nargs="+", metavar="LOGT",
                   help="walk 2^LOGT steps for each LOGT given (default: the run's random_walk.logt)")
    p.add_argument("--held-out", type=_positive_int, metavar="N",
                   help="check on N images of the split (default: half); A, the rest, allows sizes up to the "
                        "split's size - N, and sizes up to half train on the same images whatever N is")
    p.add_argument("--out", help="where the networks and curve.tsv go (default: <results>/affinity_curve)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the networks train and run (default: auto, a GPU where there is one)")

    p = sub.add_parser("benchmark", help="time the default workflow and the CAM stage; print the numbers")
    p.add_argument("--workdir", help="run directory (default: a new temporary folder)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", help="config to run (default: config/config.yaml)")
    p.add_argument("--cam-images", type=int, default=40, help="images timed for the CAM throughput")
    p.add_argument("--skip-workflow", action="store_true",
                   help="measure the CAM stage on an existing run in --workdir without rerunning the workflow")
    p.add_argument("--skip-backbones", action="store_true", help="leave out the speed of each backbone at VOC size")

    p = sub.add_parser("stage-times", help="wall time of a run's jobs summed per method and per stage")
    p.add_argument("results", nargs="?", default="results", help="the run's results folder")

    p = sub.add_parser("benchmark-rw", help="sparse vs dense random walk (time, peak memory) and CRF speed")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--strides", type=int, nargs="+", default=[8, 4], help="feature strides to measure")
    p.add_argument("--crf-images", type=int, default=16, help="images timed for the CRF speed")

    p = sub.add_parser("benchmark-dag", help="time the dry run of a 10,582-image VOC-sized manifest; jobs per stage")
    p.add_argument("--shards", type=int, nargs="+", default=[16, 64], help="n_shards values to plan with")
    p.add_argument("--workdir", help="an empty folder to build in and keep (default: a temporary one)")

    p = sub.add_parser("benchmark-backbones", help="training and CAM speed of each backbone at VOC size")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--backbones", nargs="+", help="registered backbone names (default: the usual five)")
    p.add_argument("--seconds", type=float, default=5.0, help="time spent on each measurement")

    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            from .status import run as status

            print(status(snakefile=Path(__file__).resolve().parents[1] / "Snakefile", workdir=args.directory,
                         configfiles=args.configfile, clean=args.clean))
        elif args.command == "inspect":
            from .inspection import describe

            print(describe(args.file, None if args.all else 5))
        elif args.command == "show":
            from .inspection import show

            path, image_id, threshold = show_target(args)
            print(show(path, image_id, args.output, threshold))
        elif args.command == "export-masks":
            export_masks(args)
        elif args.command == "evaluate-masks":
            evaluate_masks(args)
        elif args.command == "export-instances":
            from .coco import export_instances
            from .mask_folders import read_manifest, stage_shards

            done = export_instances(shard_paths=stage_shards(args.results, args.stage, args.split),
                                    records=read_manifest(args.results, args.split),
                                    classes=_classes(args.configfile, args.results), out_path=args.output)
            print(f"{done['instances']} instances of {done['images']} images written to {args.output}")
        elif args.command == "config":
            import yaml

            from .config import load_file

            print(yaml.safe_dump(load_file(args.file), sort_keys=False), end="")
        elif args.command == "labels-csv":
            from .datasets.voc import write_labels_csv

            print(f"{write_labels_csv(args.root, args.split, args.output)} images written to {args.output}")
        elif args.command == "seeds":
            seeds(args)
        elif args.command == "claims":
            from .claims import claims_table, judge, spread_rows, spread_table
            from .seeds import read_runs

            runs = read_runs(dict(enumerate(map(Path, args.results))))
            print(spread_table(spread_rows(runs)) + "\n\n" + claims_table(judge(runs)))
        elif args.command == "affinity-check":
            affinity_check(args)
        elif args.command == "affinity-curve":
            affinity_curve(args)
        elif args.command == "benchmark":
            from .benchmark import main as benchmark

            benchmark(args)
        elif args.command == "stage-times":
            from .stage_times import time_table

            print(time_table(args.results))
        elif args.command == "benchmark-rw":
            from .benchmark_rw import main as benchmark_rw

            benchmark_rw(args)
        elif args.command == "benchmark-backbones":
            from .benchmark_backbones import DEFAULT_BACKBONES, main as benchmark_backbones

            args.backbones = args.backbones or list(DEFAULT_BACKBONES)
            benchmark_backbones(args)
        elif args.command == "benchmark-dag":
            from .benchmark_dag import main as benchmark_dag

            benchmark_dag(args)
    except (OSError, ValueError) as e:  # our errors name the file and the problem
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def affinity_check(args) -> None:
    from .affinity_check import check, walk_inputs
    from .mask_folders import read_manifest

    if args.logt and not args.walk:
        raise ValueError("--logt sets the walk's lengths: it needs --walk")
    if args.beta and not args.walk:
        raise ValueError("--beta sets the walk's powers of the affinities: it needs --walk")
    results = Path(args.results)
    model = Path(args.model) if args.model else results / "affinity" / "model.pt"
    if not model.is_file():
        raise FileNotFoundError(f"{model}: no AffinityNet there (train it with `snakemake results/affinity/model.pt`)")
    split = args.split or _training_split(results)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():  # said here: pick_device's message names the config key
            raise ValueError("--device cuda, but no CUDA device is visible (--device auto or cpu runs on the CPU)")
    with contextlib.ExitStack() as stack:
        walk = {**walk_inputs(results, split, stack), "logts": args.logt, "betas": args.beta} if args.walk else None
        s = check(model, read_manifest(results, split), args.max_images, args.device, walk)
    print(f"{model} on {s['images']} images of split {split} ({s['skipped']} without a usable mask), "
          f"radius {s['radius']}:")
    print(f"  AUC {s['auc']:.3f}: same-class pairs over different-class pairs (0.5 = no separation)")
    print(f"  mean W: same class {s['mean_w_same']:.3f} ({s['same_pairs']} pairs), "
          f"different {s['mean_w_different']:.3f} ({s['different_pairs']} pairs)")
    if walk:
        _print_walks(s, walk["cfg"])


def affinity_curve(args) -> None:
    import logging

    from .affinity_curve import run, table
    from .config import layered
    from .datasets import class_names

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # a line per network trained and checked
    cfg, _ = layered(args.configfile)
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "affinity_curve"
    rows = run(results=results, cfg=cfg, classes=list(class_names(cfg["dataset"])), sizes=args.sizes,
               seeds=args.seeds, logts=args.logt, out=out, device=args.device, held_out=args.held_out)
    print(f"AffinityNets trained on images of A, checked on the {rows[0]['b_images']} of B ({out / 'curve.tsv'}; "
          f"mIoU in %, best over the background score; in brackets the gain over the CAMs' best on B, "
          f"{100 * rows[0]['cam_b']:.1f} %):")
    print(table(rows))


def _print_walks(s: dict, cfg: dict) -> None:
    from .affinity_check import WALKS

    how = "argmax" if cfg["normalisation"] == "psa" else "best mIoU over the background score"
    if not s["walks"]:
        print("  the walk of the CAMs: none, no image had CAMs of its size")
        return
    for (beta, logt), walks in s["walks"].items():
        run = [f"beta {cfg['beta']:g}"] if beta != cfg["beta"] else []
        run += [f"{2 ** cfg['logt']} steps"] if logt != cfg["logt"] else []
        run = f"; the run's: {', '.join(run)}" if run else ""
        print(f"  the walk ({cfg['normalisation']}, beta {beta:g}, {2 ** logt} steps{run}) of the CAMs of "
              f"{s['walked_images']} images, {how}:")
        for name, (miou, score, at_run) in walks.items():
            at = "" if score is None else (f" at {score:.2f}, {100 * at_run:5.1f} % at the run's "
                                           f"{s['walk_run_score']:.2f}")
            print(f"    {name:11s} {100 * miou:5.1f} %{at}  ({WALKS[name]})")


def _logt(text: str) -> int:
    if not text.isdigit() or int(text) > 12:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 to 12 (2^12 = 4096 steps)")
    return int(text)


def _beta(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number (the power of the affinities)")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _training_split(results: Path) -> str:
    """The split the AffinityNet learnt from: the one of the run's affinity labels."""
    found = sorted(p.name for p in (results / "affinity_labels").glob("*") if p.is_dir())
    if len(found) != 1:
        raise ValueError(f"{results / 'affinity_labels'}: cannot tell the training split "
                         f"(found {', '.join(found) or 'none'}); pass --split")
    return found[0]


def seeds(args) -> None:
    from .claims import claims_table, spread_table
    from .seeds import read_runs, run_seeds, seed_dir, write_outputs

    out = Path(args.out)
    extra = args.snakemake_args[1:] if args.snakemake_args[:1] == ["--"] else args.snakemake_args
    if not args.no_run:
        run_seeds(args.seeds, args.configfile, args.cores, out, args.parallel, extra)
    runs = read_runs({s: seed_dir(out, s) / "results" for s in args.seeds})
    spread, judged = write_outputs(runs, out)
    print(f"each row over seeds {', '.join(map(str, args.seeds))} (mIoU in %; {out}/spread.tsv):")
    print(spread_table(spread))
    print(f"\nthe papers' claims (differences in points; {out}/claims.tsv):")
    print(claims_table(judged))


class VersionAction(argparse.Action):
    """--version, computed only when asked for (it runs git)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def version_text() -> str:
    """The package version, and the commit and state of the checkout it runs from, when it is one."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"wsss-pipeline {version('wsss-pipeline')}"
    except PackageNotFoundError:
        text = "wsss-pipeline (not installed)"
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{text} (commit {commit}, {repo})" if commit else text


def show_target(args) -> tuple:
    """(artifact file, image id, threshold) of `show`'s two forms."""
    from .artifacts import ArtifactReader
    from .mask_folders import stage_shards, stage_threshold

    if len(args.target) == 2:
        path, image_id = args.target
        return path, image_id, 0.15 if args.threshold is None else args.threshold
    if len(args.target) != 3:
        raise ValueError("show takes FILE IMAGE_ID or STAGE SPLIT IMAGE_ID")
    stage, split, image_id = args.target
    threshold = args.threshold if args.threshold is not None else stage_threshold(args.results, stage)
    for shard in stage_shards(args.results, stage, split):
        with ArtifactReader(shard) as reader:
            if image_id in reader:
                return shard, image_id, 0.15 if threshold is None else threshold
    raise ValueError(f"image {image_id} is in no shard of {stage}, split {split} (skipped upstream, or another split)")


def _classes(configfile, results) -> tuple[str, ...]:
    """The run's class names: from its config file when given, else from its artifacts."""
    from .artifacts import ArtifactError, ArtifactReader

    if configfile:
        from .config import load_file
        from .datasets import class_names

        return class_names(load_file(configfile)["dataset"])
    for path in sorted(Path(results).glob("*/*/*.h5")):
        try:
            with ArtifactReader(path) as reader:
                if reader.classes():
                    return tuple(reader.classes())
        except ArtifactError:
            continue
    raise ValueError(f"{results}: no artifact names the run's classes; give the run's config (--configfile)")


def export_masks(args) -> None:
    from . import mask_folders as mfo

    shards = mfo.stage_shards(args.results, args.stage, args.split)
    threshold = args.threshold if args.threshold is not None else mfo.stage_threshold(args.results, args.stage)
    done = mfo.export_masks(shard_paths=shards, records=mfo.read_manifest(args.results, args.split), out_dir=args.dir,
                            split=args.split, n_classes=len(_classes(args.configfile, args.results)) + 1,
                            threshold=threshold, scores=args.scores)
    print(f"{done['written']} masks of {args.stage} ({args.split}) written to {args.dir}"
          + (f"; {len(done['missing'])} image(s) without output (skipped upstream)" if done["missing"] else ""))


def evaluate_masks(args) -> None:
    from . import mask_folders as mfo
    from .summary import format_table, write_summary

    if not Path(args.dir).is_dir():
        raise FileNotFoundError(f"{args.dir}: no such folder of masks")
    out = Path(args.output or Path(args.dir) / f"{args.split}.metrics.json")
    problems = out.with_name(out.name.removesuffix(".json").removesuffix(".metrics") + ".problems.tsv")
    metrics = mfo.evaluate_mask_folder(folder=args.dir, records=mfo.read_manifest(args.results, args.split),
                                       classes=_classes(args.configfile, args.results), split=args.split, out_path=out,
                                       problems_path=problems)
    table = out.with_suffix(".tsv")
    write_summary([out], table)
    print(format_table(table, columns=("stage", "split", "miou", "miou_decided", "coverage", "n_images", "n_skipped")))
    skipped = metrics["n_skipped"]
    print(f"metrics: {out}; per-class IoU: {table}"
          + (f"; {skipped} mask(s) missing or unusable, listed in {problems}" if skipped else ""))


if __name__ == "__main__":
    sys.exit(main())
