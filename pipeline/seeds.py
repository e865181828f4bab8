"""`python -m pipeline seeds`: one configuration run under several seeds, side by side, then each
row's mean and spread and the papers' claims judged on them (pipeline/claims.py).

Seed N runs in its own directory, <out>/seed<N>/ (results/seeds/seed<N>/ by default), with
the user's configuration written there as config.yaml with `seed: N`: the data (and the
synthetic dataset's own seed) stay the same, every random choice of training changes. Paths in
the configuration that exist relative to the directory the command runs from are made absolute
there, so a config that names ../shared/... works from the seed's directory too. A seed whose
run is complete costs nothing the next time (Snakemake finds nothing to do), so adding a seed
runs only that seed. Run one after another, a new seed's directory starts as a copy of the
previous seed's finished run (share_finished_run): Snakemake's own triggers then rerun every job
whose parameters hold the seed (each training) and what follows it, and keep what no seed
reaches (the dataset, superpixels, the saliency detector's maps: on the photos 5 to 10 minutes
of job time a seed).

Written to <out>/: spread.tsv (row, seeds, mean, sd, min, max, seed<N> columns; fractions
0..1) and claims.tsv (each claim's mean, sd, seeds that met it, verdict).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .atomic import leftover, write_text
from .claims import judge, row_values, spread_rows
from .config import DEFAULT_CONFIG, REPO, deep_merge, load_layers
from .summary import write_rows

OUT = Path("results/seeds")


def absolute_paths(value, base: Path):
    """`value` with every string that names an existing file or folder relative to `base`
    replaced by its absolute path (recursively through mappings and lists)."""
    if isinstance(value, dict):
        return {k: absolute_paths(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [absolute_paths(v, base) for v in value]
    if isinstance(value, str) and value and not Path(value).is_absolute() and (base / value).exists():
        return str((base / value).resolve())
    return value


def seed_config(configfiles, seed: int, base: Path) -> dict:
    """The merged configuration of the given files (each on top of what it extends), paths made
    absolute against `base`, with `seed` set."""
    values = {}
    for f in configfiles or [DEFAULT_CONFIG]:
        values = deep_merge(values, load_layers(f)[0])
    return {**absolute_paths(values, base), "seed": int(seed)}


def seed_dir(out: Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


def snakemake_command(workdir: Path, cores, extra=()) -> list[str]:
    return [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", str(cores),
            *extra]


# Snakemake's records of a directory's outputs (parameters, code, times; unfinished jobs)
RECORDS = ("metadata", "incomplete")


def can_share(source: Path, target: Path) -> bool:
    """Whether share_finished_run would copy: `target` has no results/ yet and `source` has
    Snakemake's records (without them a copied training could not be told from one of this seed)."""
    source, target = Path(source), Path(target)
    return not (target / "results").exists() and any((source / ".snakemake" / "metadata").glob("*"))


def share_finished_run(source: Path, target: Path) -> bool:
    """Copy the run in `source` (results/ without training checkpoints and benchmark files, and
    Snakemake's records of its outputs, times kept) into `target`, a seed's directory that has no
    results/ yet; returns whether it copied. Snakemake in `target` then judges each copied output
    by its record as it would in `source`: a job whose parameters differ there (the seed) reruns,
    and so does what follows it. Benchmark files stay behind so that `stage-times` in `target`
    counts only the jobs that ran there (logs are copied: they say how a kept output was made).
    The copy is staged beside and moved into place, results/ last, so a copy cut short leaves no
    results/ and is made again."""
    source, target = Path(source), Path(target)
    if not can_share(source, target):
        return False
    staging = target / ".sharing.tmp"
    shutil.rmtree(staging, ignore_errors=True)

    def skipped(folder, names):
        top = Path(folder) == source / "results"
        return [n for n in names if (top and n in ("checkpoints", "benchmarks")) or leftover(Path(folder) / n)]

    shutil.copytree(source / "results", staging / "results", ignore=skipped)
    records = target / ".snakemake"
    records.mkdir(parents=True, exist_ok=True)
    for name in RECORDS:
        shutil.rmtree(records / name, ignore_errors=True)  # records of outputs no longer there
        if (source / ".snakemake" / name).is_dir():
            shutil.copytree(source / ".snakemake" / name, records / name)
    (staging / "results").rename(target / "results")
    shutil.rmtree(staging)
    return True


def run_seeds(seeds, configfiles=(), cores="all", out: Path = OUT, parallel: bool = False, extra=()) -> None:
    """Run the workflow once per seed, each in its own directory (one after another, each new
    directory starting from the previous seed's finished run, or all at once with `parallel`:
    for a cluster profile passed in `extra`). Raises ChildProcessError naming the seed's log
    when a run fails (with `parallel`, after every run has ended)."""
    base = Path.cwd()
    started = []
    previous = None  # (seed, directory) of the last finished run, one after another only
    # a copy is only safe where Snakemake reruns a job whose parameters (the seed) changed, and
    # a dry run writes nothing
    share = not any(a.startswith("--rerun-trigger") or a in ("-n", "--dry-run", "--dryrun") for a in extra)
    for seed in seeds:
        workdir = seed_dir(out, seed).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(seed_config(configfiles, seed, base), sort_keys=False)
        if not (workdir / "config.yaml").is_file() or (workdir / "config.yaml").read_text() != text:
            write_text(workdir / "config.yaml", text)  # unchanged: keeps its time, so nothing reruns for it
        if share and previous and can_share(previous[1], workdir):
            # said before the copy: a photo run's results take tens of seconds to copy
            print(f"seed {seed}: copying seed {previous[0]}'s finished run into {workdir}; what the seed "
                  "changes reruns", flush=True)
            share_finished_run(previous[1], workdir)
        log = workdir / "snakemake.log"
        print(f"seed {seed}: running in {workdir} (log {log})", flush=True)
        with open(log, "w") as f:
            proc = subprocess.Popen(snakemake_command(workdir, cores, extra), stdout=f, stderr=subprocess.STDOUT)
        started.append((seed, proc, log))
        if not parallel:
            _check([started[-1]])
            previous = seed, workdir
    if parallel:
        _check(started)


def _check(started) -> None:
    """Wait for every run given; a failure names each failed seed's log (ChildProcessError)."""
    failed = []
    for seed, proc, log in started:
        if proc.wait() != 0:
            failed.append(f"seed {seed}: snakemake failed ({proc.returncode}); see {log}")
        else:
            print(f"seed {seed}: done", flush=True)
    if failed:
        raise ChildProcessError("; ".join(failed))


def read_run(results: Path) -> dict[str, dict]:
    """A run's rows (row -> row_values) from its results/metrics/*.json, in the order of its
    results table (summary.tsv), then the rest (ablation rows) by name."""
    rows, metrics_dir = {}, Path(results, "metrics")
    summary = metrics_dir / "summary.tsv"
    order = [line.split("\t", 1)[0] for line in summary.read_text().splitlines()[1:]] if summary.is_file() else []
    paths = sorted(metrics_dir.glob("*.json"), key=lambda p: (order.index(p.stem) if p.stem in order else len(order),
                                                             p.stem))
    for path in paths:
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read the metrics: {e}") from e
        values = row_values(metrics)
        if values:
            rows[path.stem] = values
    return rows


def read_runs(results_dirs: dict[int, Path]) -> dict[int, dict[str, dict]]:
    """seed -> its rows; a folder without metrics is an error that names it."""
    runs = {}
    for seed, results in results_dirs.items():
        runs[seed] = read_run(results)
        if not runs[seed]:
            raise ValueError(f"{results}/metrics: no metric files (has the run for seed {seed} finished?)")
    return runs


def write_outputs(runs: dict[int, dict[str, dict]], out: Path) -> tuple[list[dict], list[dict]]:
    """spread.tsv and claims.tsv under `out`; returns (spread rows, judged claims)."""
    spread, judged = spread_rows(runs), judge(runs)
    per_seed = [f"seed{s}" for s in runs]

    def flat(entry):
        return {**entry, **{f"seed{s}": v for s, v in entry["per_seed"].items()}}

    write_rows([flat(r) for r in spread], ["row", "n_seeds", "mean", "sd", "min", "max", *per_seed],
               Path(out) / "spread.tsv")
    write_rows([flat(c) for c in judged],
               ["method", "claim", "paper", "n_seeds", "mean", "sd", "seeds_met", "verdict", *per_seed],
               Path(out) / "claims.tsv")
    return spread, judged
