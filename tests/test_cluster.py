"""The workflow on a SLURM cluster and at dataset scale.

The submission test is real: it runs the tiny workflow through `snakemake --profile
workflow/profiles/slurm` (snakemake-executor-plugin-slurm, sbatch), checks with sacct that each
job ran as a SLURM job, and compares the results with a local run of the same config. It uses
a cluster that answers `sinfo`, or starts a one-node cluster on localhost with the local-slurm
scripts (root and apt needed; LOCAL_SLURM_TOOLS names their folder); otherwise it skips and
says why. Partition and account: $WSSS_SLURM_PARTITION / $WSSS_SLURM_ACCOUNT, else the local
cluster's debug / ci.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, SNAKEMAKE, planned_jobs, snakemake, write_config
from pipeline import benchmark_dag
from pipeline.artifacts import ArtifactReader

SLURM_TOOLS = Path(os.environ.get("LOCAL_SLURM_TOOLS", REPO.parent / "shared" / "tools" / "local-slurm"))
PROFILE = REPO / "workflow" / "profiles" / "slurm"
# The tiny workflow's core path (CAMs -> random walk -> segmenter -> CRF, evaluated); the
# methods' extra stages add jobs, not new kinds of submission.
CORE = {"sccam": {"enabled": False}, "eps": {"enabled": False}, "mcof": {"enabled": False},
        "prm": {"enabled": False}, "segmenter": {"heads": ["aspp"], "fully_supervised": False}}
GPU_RULES = {"train_classifier", "make_cams", "train_affinity", "random_walk", "train_segmenter", "segment"}


def _answers(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def slurm_cluster():
    """(partition, account) of a SLURM cluster with accounting; skips when there is none."""
    started = False
    if not (_answers("sinfo") and _answers("sacct", "-n", "-X", "-S", "now")):
        start = SLURM_TOOLS / "start.sh"
        if not start.is_file():
            pytest.skip(f"no SLURM cluster answers sinfo, and {start} is absent (set LOCAL_SLURM_TOOLS)")
        if os.geteuid() != 0:
            pytest.skip(f"no SLURM cluster answers sinfo, and starting one with {start} needs root")
        # two (fake, /dev/null-backed) GPUs: two one-CPU GPU jobs run at once on the 2-CPU node
        env = dict(os.environ, LOCAL_SLURM_FAKE_GPUS=os.environ.get("LOCAL_SLURM_FAKE_GPUS", "2"))
        proc = subprocess.run(["bash", str(start)], capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            pytest.skip(f"{start} could not start a cluster here ({proc.returncode}): {proc.stderr[-500:]}")
        started = True
    yield os.environ.get("WSSS_SLURM_PARTITION", "debug"), os.environ.get("WSSS_SLURM_ACCOUNT", "ci")
    if started:
        # --purge removes the config too: with a config whose controller is down, every later
        # snakemake command would wait ~9 s (the SLURM plugin asks scontrol at start-up)
        subprocess.run(["bash", str(SLURM_TOOLS / "stop.sh"), "--purge"], capture_output=True, timeout=300)


def slurm_snakemake(workdir: Path, configfile: Path, partition: str, account: str, *args: str):
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--profile", str(PROFILE),
           # one CPU per job (two jobs at once on a 2-CPU node), and a cluster that answers fast
           "--max-threads", "1", "--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "2", *args]
    env = dict(os.environ, WSSS_SLURM_PARTITION=partition, WSSS_SLURM_ACCOUNT=account, PYTHONUNBUFFERED="1")
    # subprocess kills with SIGKILL on timeout: the plugin can ignore SIGTERM while it waits on sacct
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=2400)


def submitted_jobs(output: str) -> dict[str, str]:
    """SLURM job id -> rule, from the 'submitted with SLURM jobid' lines of a run."""
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output)
    return {job_id: rule for job_id, rule in found}


def sacct(job_ids) -> dict[str, dict]:
    proc = subprocess.run(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids),
                           "--format=JobID,State,ExitCode,AllocCPUS,AllocTRES"],
                          capture_output=True, text=True, check=True, timeout=60)
    rows = [line.split("|") for line in proc.stdout.splitlines() if line.strip()]
    return {r[0]: {"state": r[1], "exit": r[2], "cpus": int(r[3]), "tres": r[4]} for r in rows}


@pytest.mark.slow
def test_tiny_workflow_runs_as_slurm_jobs_and_matches_a_local_run(slurm_cluster, tmp_path):
    partition, account = slurm_cluster
    config = write_config(tmp_path / "core.yaml", CORE)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    # the local run (one thread per job, the helper's, as on SLURM) alongside the SLURM one: it
    # fills the cores while the SLURM run waits on sbatch and sacct
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(snakemake, local, config, timeout=1500)
        proc = slurm_snakemake(cluster, config, partition, account)
        local_run.result()
    assert proc.returncode == 0, proc.stdout[-6000:]

    # every job but the local rules (manifests, summary, the target) was a SLURM job
    remote = {}
    for rule in re.findall(r"^rule (\w+):$", proc.stdout, flags=re.M):
        remote[rule] = remote.get(rule, 0) + 1
    submitted = submitted_jobs(proc.stdout)
    by_rule = {}
    for rule in submitted.values():
        by_rule[rule] = by_rule.get(rule, 0) + 1
    assert by_rule == remote and len(submitted) >= 25
    assert set(remote) >= GPU_RULES and not set(remote) & {"manifest", "manifest_shard", "summary", "all"}
    # ... and SLURM's accounting holds each one, finished, with the resources the rule asked for
    for _ in range(30):  # sacct can lag the last job by a moment
        accounted = sacct(submitted)
        if len(accounted) == len(submitted):
            break
        time.sleep(1)
    assert set(accounted) == set(submitted)
    for job_id, rule in submitted.items():
        job = accounted[job_id]
        assert job["state"] == "COMPLETED" and job["exit"] == "0:0", (rule, job)
        assert ("gres/gpu=1" in job["tres"]) == (rule in GPU_RULES), (rule, job)
        assert job["cpus"] == 1  # --max-threads caps the rules' threads, and so --cpus-per-task

    # the same results as the local run
    summary = {w: (w / "results/metrics/summary.tsv").read_text() for w in (local, cluster)}
    assert summary[cluster] == summary[local] and "deeplab_aspp" in summary[local]
    for row in ("cam", "rw", "deeplab_aspp"):
        a, b = (json.loads((w / f"results/metrics/{row}.json").read_text()) for w in (local, cluster))
        assert a["miou"] == b["miou"] and a["per_class_iou"] == b["per_class_iou"]
    for artifact in sorted((local / "results/rw/val").glob("*.h5")):
        with ArtifactReader(artifact) as a, ArtifactReader(cluster / artifact.relative_to(local)) as b:
            assert a.image_ids() == b.image_ids()
            for image_id in a.image_ids():
                np.testing.assert_array_equal(a.read(image_id, "mask")["mask"], b.read(image_id, "mask")["mask"])
    # and a second run through SLURM finds nothing to do
    again = slurm_snakemake(cluster, config, partition, account)
    assert again.returncode == 0 and not submitted_jobs(again.stdout), again.stdout[-3000:]


def test_slurm_profile_maps_rule_resources_to_sbatch_requests(tmp_path):
    """What each job asks SLURM for, as the executor plugin reads it (a dry run; no cluster)."""
    config = write_config(tmp_path / "tiny.yaml")
    env = dict(os.environ, WSSS_SLURM_PARTITION="gpu_part", WSSS_SLURM_ACCOUNT="lab7")
    proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(config), "--profile", str(PROFILE), "--dry-run", "--cores", "64"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    jobs = planned_resources(proc.stdout)
    rules = read_rule_resources()
    assert set(jobs) - {"all", "manifest", "manifest_shard", "summary", "eps_ablation", "mcof_ablation",
                        "sccam_ablation", "segmenter_ablation", "synthetic_data"} <= set(rules)
    for rule, (local, threads, values) in jobs.items():
        if local:
            continue
        declared = rules.get(rule, {})
        # partition and account come from the profile (here: the environment), not the rules
        assert values["slurm_partition"] == "gpu_part" and values["slurm_account"] == "lab7", rule
        # memory, wall time and CPUs are the rule's own (the profile's defaults only fill gaps)
        assert int(values["mem_mb"]) == declared.get("mem_mb", 4000), rule
        assert int(values["runtime"]) == declared.get("runtime", 60), rule
        assert threads == declared.get("threads", 1), rule
        # a network's rule asks for one GPU (sbatch --gpus=1), every other rule for none
        assert values.get("gpu") == ("1" if declared.get("gpu") else None), rule
    assert {r for r, (local, _, v) in jobs.items() if v.get("gpu") == "1"} >= GPU_RULES | {"train_prm", "train_eps"}

    # compute.device: cpu asks for no GPU anywhere (a CPU-only cluster)
    cpu = write_config(tmp_path / "cpu.yaml", {"compute": {"device": "cpu"}})
    proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(cpu), "--profile", str(PROFILE), "--dry-run", "--cores", "64"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "gpu=1" not in proc.stdout and "mem_mb=16000" in proc.stdout


def test_network_jobs_share_the_cores_of_one_machine(tmp_path):
    """A shard's CAMs, walk, segmentation... and a training take cores / shards threads (at most
    the rule's), so as many run side by side; with --jobs (a cluster) each asks for the rule's
    own. So do the CRF stages' processes."""
    config = write_config(tmp_path / "four.yaml", {"dataset": {"n_shards": 4}})

    def threads(*args):
        proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                               "--configfile", str(config), "--dry-run", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
        return {rule: n for rule, (_, n, _) in planned_resources(proc.stdout).items()}

    two, eight, cluster = threads("--cores", "2"), threads("--cores", "8"), threads("--cores", "64", "--jobs", "64")
    for rule in ("make_cams", "segment", "random_walk", "mcof_features", "prm_peaks", "sccam_features"):
        assert (two[rule], eight[rule], cluster[rule]) == (1, 2, 4), rule
    for rule in ("train_classifier", "train_affinity", "train_segmenter", "train_prm", "train_eps"):
        assert (two[rule], eight[rule], cluster[rule]) == (1, 2, 8), rule
    for rule in ("affinity_labels", "crf_masks"):  # CRF processes
        assert (two[rule], eight[rule], cluster[rule]) == (1, 2, 8), rule
    assert (two["sccam_clusters"], eight["sccam_clusters"], cluster["sccam_clusters"]) == (1, 2, 2)  # k-means


def test_the_longest_chains_start_first(tmp_path):
    """The jobs from the saliency detector and the CAM classifier through the CAMs and AffinityNet
    to the walk carry a higher priority than the rest, so that Snakemake does not leave one of
    these chains to the end of a run; the other trainings (the segmenters, PRM) do not jump ahead."""
    proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--dry-run", "--cores", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    priorities = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        if head:
            found = re.search(r"^    priority: (\d+)$", block, flags=re.M)
            priorities.setdefault(head.group(1), int(found.group(1)) if found else 0)
    assert {"train_segmenter", "train_prm", "segment", "crf_masks", "train_eps", "random_walk"} <= set(priorities)
    chains = {"train_classifier", "saliency_detector", "train_eps", "make_cams", "affinity_labels", "train_affinity",
              "random_walk"}  # saliency_detector: not in the default run (auto saliency: computed there)
    assert {rule for rule, p in priorities.items() if p > 0} == chains & set(priorities)


def planned_resources(dry_run: str) -> dict[str, tuple[bool, int, dict]]:
    """rule -> (local rule, threads, resources) of the first job of each rule in a dry run's output."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", dry_run):
        head = re.match(r"(local)?rule (\w+):\n", block)
        if head:
            resources = re.search(r"^    resources: (.*)$", block, flags=re.M)
            threads = re.search(r"^    threads: (\d+)$", block, flags=re.M)
            values = dict(item.split("=", 1) for item in resources.group(1).split(", ")) if resources else {}
            jobs.setdefault(head.group(2), (bool(head.group(1)), int(threads.group(1)) if threads else 1, values))
    return jobs


def read_rule_resources() -> dict[str, dict]:
    """rule -> {threads, mem_mb, runtime, gpu} as written in workflow/rules/*.smk."""
    rules = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for m in re.finditer(r"^ *rule (\w+):\n(.*?)(?=^ *rule \w+:|\Z)", text, flags=re.M | re.S):
            body, values = m.group(2), {}
            # share_of_cores(N): N on a cluster (a share of the cores on one machine)
            threads = re.search(r"^\s+threads: (?:share_of_cores\()?(\d+)", body, flags=re.M)
            if threads:
                values["threads"] = int(threads.group(1))
            for key in ("mem_mb", "runtime"):
                found = re.search(rf"^\s+{key}=(\d+),", body, flags=re.M)
                if found:
                    values[key] = int(found.group(1))
            values["gpu"] = bool(re.search(r"^\s+gpu=GPU,", body, flags=re.M))
            rules[m.group(1)] = values
    return rules


def test_every_submitted_rule_sets_threads_memory_and_runtime():
    for rule, values in read_rule_resources().items():
        if rule in {"manifest", "manifest_shard", "summary", "eps_ablation", "mcof_ablation", "sccam_ablation",
                    "segmenter_ablation", "predict"}:
            continue
        assert {"threads", "mem_mb", "runtime"} <= set(values), rule


def test_dag_benchmark_plans_one_job_per_shard_per_stage(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    labels = benchmark_dag.make_voc(root, {"train_aug": 48, "val": 16})
    config = benchmark_dag.config_for(root, labels, 4, tmp_path / "voc.yaml")
    assert yaml.safe_load(config.read_text())["dataset"]["train_split"] == "train_aug"
    seconds, out = benchmark_dag.dry_run(tmp_path / "run", config)
    groups = benchmark_dag.jobs_per_stage(out)
    assert groups[("make_cams", "cams=cam, split=train_aug")] == 4
    assert groups[("make_cams", "cams=cam, split=val")] == 4
    assert groups[("train_classifier", "")] == 1
    assert max(groups.values()) == 4 and sum(groups.values()) == sum(planned_jobs(out).values())
    # 10 added images touch the shards their ids hash to, and move no existing image
    touched = {zlib.crc32(f"added_{j:02d}".encode()) % 8 for j in range(10)}
    assert benchmark_dag.shard_stability([f"img{i}" for i in range(200)], 8) == (len(touched), 0)


def test_slurm_runs_stop_before_submitting_without_partition_and_account(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WSSS_SLURM_PARTITION", "WSSS_SLURM_ACCOUNT")}
    proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
                           "--executor", "slurm", "--jobs", "1", "results/manifest/val/shard00.tsv"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "set WSSS_SLURM_PARTITION and WSSS_SLURM_ACCOUNT" in proc.stdout, proc.stdout[-3000:]
    assert not (tmp_path / "results/manifest/val/shard00.tsv").exists()  # nothing ran, nothing was submitted
