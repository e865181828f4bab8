"""Command line: python -m pipeline {inspect,show,config,labels-csv,benchmark,benchmark-rw,benchmark-dag,
benchmark-backbones} ..."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="print the provenance, parameters and tree of an HDF5 artifact")
    p.add_argument("file")
    p.add_argument("--all", action="store_true", help="list every image group, not only the first 5")

    p = sub.add_parser("show", help="draw an image with its CAMs or masks overlaid, as PNG")
    p.add_argument("file")
    p.add_argument("image_id")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    p.add_argument("--threshold", type=float, default=0.15, help="background threshold of the CAM label map")

    p = sub.add_parser("config", help="print a config file completed with every default (validated)")
    p.add_argument("file", nargs="?", default="config/config.yaml")

    p = sub.add_parser("labels-csv", help="write image-level labels derived from masks (VOC layout) to a CSV, once")
    p.add_argument("root", help="the VOC2012 folder")
    p.add_argument("split", help="split name, e.g. train_aug")
    p.add_argument("-o", "--output", required=True)

    p = sub.add_parser("benchmark", help="time the default workflow and the CAM stage; print the numbers")
    p.add_argument("--workdir", help="run directory (default: a new temporary folder)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", help="config to run (default: config/config.yaml)")
    p.add_argument("--cam-images", type=int, default=40, help="images timed for the CAM throughput")
    p.add_argument("--skip-workflow", action="store_true",
                   help="measure the CAM stage on an existing run in --workdir without rerunning the workflow")
    p.add_argument("--skip-backbones", action="store_true", help="leave out the speed of each backbone at VOC size")

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
        if args.command == "inspect":
            from .inspection import describe

            print(describe(args.file, None if args.all else 5))
        elif args.command == "show":
            from .inspection import show

            print(show(args.file, args.image_id, args.output, args.threshold))
        elif args.command == "config":
            import yaml

            from .config import load_file

            print(yaml.safe_dump(load_file(args.file), sort_keys=False), end="")
        elif args.command == "labels-csv":
            from .datasets.voc import write_labels_csv

            print(f"{write_labels_csv(args.root, args.split, args.output)} images written to {args.output}")
        elif args.command == "benchmark":
            from .benchmark import main as benchmark

            benchmark(args)
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


if __name__ == "__main__":
    sys.exit(main())
