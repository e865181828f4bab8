"""Where a run's time went (pipeline/stage_times.py): benchmark files summed per method and stage."""
import re

from pipeline.stage_times import job_times, method_of, time_table

from conftest import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(root, rel, seconds, rss="512.5"):
    path = root / "benchmarks" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:{int(seconds):02d}\t{rss}\t1\t1\t1\t0\t0\t50\t{seconds}\n")


def test_jobs_are_summed_per_method_and_per_stage(tmp_path):
    bench(tmp_path, "train_classifier.tsv", 30.0)
    bench(tmp_path, "make_cams/cam/val/shard00.tsv", 4.0)
    bench(tmp_path, "make_cams/eps/manifold_ranking/tau0.3/cam/val/shard00.tsv", 6.0)
    bench(tmp_path, "train_segmenter/mcof_pixelnet_r1.tsv", 12.0)
    bench(tmp_path, "train_segmenter/deeplab_aspp.tsv", 20.0, rss="-")
    bench(tmp_path, "crf_masks/rw/val/shard00.tsv", 8.0)
    rows = job_times(tmp_path)
    assert len(rows) == 6
    by_rule = {(r["rule"], r["wildcards"]): r for r in rows}
    assert by_rule[("make_cams", ("cam", "val", "shard00"))]["method"] == "CAM"
    assert by_rule[("train_segmenter", ("deeplab_aspp",))]["max_rss"] is None
    table = time_table(tmp_path)
    lines = table.splitlines()
    assert lines[0].split() == ["method", "jobs", "seconds", "share"]
    assert lines[1].split()[:3] == ["CAM", "2", "34.0"]  # the largest first
    assert "total" in table and "80.0" in table and "segmenters" in table and "MCOF" in table
    assert any(line.split()[:3] == ["make_cams", "2", "10.0"] for line in lines)


def test_methods_of_the_rules():
    assert method_of("make_cams", ("sccam", "k10", "r1", "cam", "train", "shard00")) == "SC-CAM"
    assert method_of("segment", ("selftrain_r2", "train", "shard01")) == "MCOF"
    assert method_of("segment", ("fully_supervised", "val", "shard01")) == "segmenters"
    assert method_of("crf_masks", ("deeplab_aspp", "val", "shard00")) == "segmenters"
    assert method_of("random_walk", ("eps_rw", "val", "shard00")) == "random walk"
    assert method_of("evaluate_masks", ("rw",)) == "evaluation and report"
    assert method_of("saliency_detector", ("u2netp", "train", "shard00")) == "saliency and EPS"
    # AffinityNet of the plain CAMs serves the random walk; EPS's own (eps_affinity) serves EPS
    assert method_of("train_affinity", ("affinity",)) == "random walk"
    assert method_of("affinity_labels", ("affinity", "train", "shard00")) == "random walk"
    assert method_of("train_affinity", ("eps_affinity",)) == "saliency and EPS"
    assert method_of("affinity_labels", ("eps_affinity", "train", "shard00")) == "saliency and EPS"
    assert method_of("affinity_labels", ("sccam_affinity", "train", "shard00")) == "SC-CAM"


def test_every_rule_writes_its_benchmark_under_its_own_name():
    """job_times takes the rule from the first folder of a benchmark path: each rule has its own,
    and only evaluation rules fall to "evaluation and report"."""
    rules = {}
    for path in (REPO / "workflow/rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", path.read_text(), re.M | re.S):
            bench = re.search(r'benchmark:\n\s+"results/benchmarks/([^"]+)"', body)
            if bench:
                rules[name] = bench.group(1)
    assert len(rules) >= 35
    for name, bench in rules.items():
        assert bench == f"{name}.tsv" or bench.startswith(f"{name}/"), (name, bench)
    evaluation = {name for name in rules if method_of(name, ("cam",)) == "evaluation and report"}
    assert evaluation == {n for n in rules if n.startswith("evaluate") or n in ("summary", "report_figures")}


def test_a_run_without_benchmarks_says_so(tmp_path):
    assert "no benchmark files" in time_table(tmp_path)
