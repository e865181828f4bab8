# Stage saliency: a saliency map per image from the configured source (pipeline/saliency.py),
# for EPS and MCOF, under results/saliency/<source>/<split>/<shard>.h5; evaluated as row
# `saliency` (max F-measure, adaptive F, MAE in results/metrics/saliency.json; not an mIoU,
# so not in summary.tsv). Other sources (the ablation) build next to it.

SALIENCY = CFG["saliency"]  # source: resolved from `auto` in common.smk


rule saliency:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
    output:
        saliency="results/saliency/{source}/{split}/{shard}.h5",
        problems="results/saliency/{source}/{split}/{shard}.problems.tsv",
    log:
        "results/logs/saliency/{source}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/saliency/{source}/{split}/{shard}.tsv"
    wildcard_constraints:
        source=one_of(plan.SALIENCY_MAP_SOURCES),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=lambda w: plan.saliency_settings(SALIENCY, w.source),
        classes=CLASSES,
        code=code_hash("pipeline.saliency"),
    script:
        "../scripts/saliency.py"


rule saliency_detector:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
    output:
        saliency="results/saliency/{source}/{split}/{shard}.h5",
        problems="results/saliency/{source}/{split}/{shard}.problems.tsv",
    log:
        "results/logs/saliency/{source}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/saliency_detector/{source}/{split}/{shard}.tsv"
    wildcard_constraints:
        source=one_of(plan.SALIENCY_DETECTOR_SOURCES),
    priority: EARLY
    threads: share_of_cores(2)
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=60,
    params:
        cfg=lambda w: plan.saliency_settings(SALIENCY, w.source),
        classes=CLASSES,
        code=code_hash("pipeline.saliency"),
    script:
        "../scripts/saliency.py"


rule evaluate_saliency:
    input:
        saliency=lambda w: saliency_shards(PLAN.saliency_rows[w.stage], EVAL_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", EVAL_SPLIT),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_saliency/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(PLAN.saliency_rows),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classes=CLASSES,
        split=EVAL_SPLIT,
        code=code_hash("pipeline.saliency"),
    script:
        "../scripts/evaluate_saliency.py"
