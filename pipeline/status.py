"""`python -m pipeline status`: the results table, and which stages of a run are complete,
stale or missing, and where their files are.

Staleness is Snakemake's own verdict (`snakemake --summary`: per output file, its status and
whether the next run would rebuild it), so it agrees with what `snakemake` would do: changed
code, parameters, inputs or config all count. Per stage (the rule and the folder its outputs
live in) the files are counted as complete (up to date), stale (present, to be rebuilt) or
missing. `--clean` also removes the temporary files (`.<name>.tmp<pid>`) that a killed job
left behind.
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

from .atomic import remove_leftovers
from .summary import aligned, format_table


def snakemake_summary(snakefile, workdir, configfiles, timeout: int = 600) -> list[dict]:
    """The rows of `snakemake --summary` (output_file, date, rule, log-file(s), status, plan)."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--snakefile", str(snakefile), "--directory", str(workdir),
           "--summary", "--quiet", "all"]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ValueError(f"snakemake --summary failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    lines = proc.stdout[proc.stdout.find("output_file\t"):]
    return list(csv.DictReader(io.StringIO(lines), delimiter="\t"))


def state(row: dict) -> str:
    if row["status"] == "missing":
        return "missing"
    return "stale" if row["plan"] == "update pending" else "complete"


def stage_table(rows: list[dict]) -> list[dict]:
    """One entry per rule and output folder: counts of complete / stale / missing files and a reason."""
    stages: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["rule"], str(Path(r["output_file"]).parent))
        s = stages.setdefault(key, {"rule": key[0], "folder": key[1], "complete": 0, "stale": 0, "missing": 0,
                                    "reason": ""})
        st = state(r)
        s[st] += 1
        if st == "stale" and not s["reason"]:
            s["reason"] = r["status"] if r["status"] != "ok" else "an input is rebuilt"
    return list(stages.values())


def format_status(stages: list[dict]) -> str:
    cells = [["stage (rule)", "state", "complete", "stale", "missing", "folder", "why stale"]]
    for s in stages:
        st = "missing" if s["missing"] and not (s["complete"] or s["stale"]) else \
            "stale" if s["stale"] or s["missing"] else "complete"
        cells.append([s["rule"], st, str(s["complete"]), str(s["stale"]), str(s["missing"]), s["folder"], s["reason"]])
    return aligned(cells)


def run(*, snakefile, workdir=".", configfiles=(), clean: bool = False) -> str:
    workdir = Path(workdir)
    out = []
    summary = workdir / "results/metrics/summary.tsv"
    out.append(f"Results ({summary}; mIoU in %):\n{format_table(summary)}" if summary.is_file()
               else f"No results table yet ({summary} is missing).")
    stages = stage_table(snakemake_summary(snakefile, workdir, configfiles))
    counts = {k: sum(s[k] for s in stages) for k in ("complete", "stale", "missing")}
    out.append(f"Files of the workflow: {counts['complete']} complete, {counts['stale']} stale, "
               f"{counts['missing']} missing (`snakemake --cores all` rebuilds the stale and missing ones).")
    out.append(format_status(stages))
    if clean:
        removed = remove_leftovers(workdir / "results")
        out.append(f"Removed {len(removed)} temporary file(s) left by killed jobs"
                   + (": " + ", ".join(map(str, removed[:10])) if removed else "."))
    return "\n\n".join(out)
