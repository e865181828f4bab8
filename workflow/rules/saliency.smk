# Stage saliency: a saliency map per image from the configured source (pipeline/saliency.py),
# for EPS and MCOF, under results/saliency/<source>/<split>/<shard>.h5; evaluated as row
# `saliency` (max F-measure, adaptive F, MAE in results/metrics/saliency.json; not an mIoU,
# so not in summary.tsv). Other sources (the ablation) build next to it.

from pipeline.saliency import default_source
from pipeline.weights import verified_path

SALIENCY = CFG["saliency"]
if SALIENCY["source"] == "auto":  # the trained detector on photographs (pipeline/saliency.py)
    SALIENCY["source"] = default_source(DS["name"])
# the training-free detectors and a folder of maps (rule saliency); the trained detector, a
# network that asks for the job's GPU (rule saliency_detector)
MAP_SOURCES = "manifold_ranking|frequency_tuned|folder"
DETECTOR_SOURCES = "u2netp"
SALIENCY_SOURCES = f"{MAP_SOURCES}|{DETECTOR_SOURCES}"
if SALIENCY["source"] == "folder" and not SALIENCY["folder"]["dir"]:
    raise ValueError("saliency.source is folder but saliency.folder.dir is not set")
if "u2netp" in [SALIENCY["source"], *SALIENCY["ablation_sources"]]:
    verified_path("u2netp")  # a missing or damaged model file stops the run here, naming the file and why
# saliency row -> its source; rows saliency_<source> are the ablation's
SALIENCY_ROWS = {"saliency": SALIENCY["source"],
                 **{f"saliency_{s}": s for s in SALIENCY["ablation_sources"] if s != SALIENCY["source"]}}


def saliency_shards(source, split):
    return shard_files(f"results/saliency/{source}/{{split}}/{{shard}}.h5", split)


def saliency_params(w):
    # u2netp's batch_size only says how it runs (the adapter reads it from the config)
    return {"source": w.source, w.source: {k: v for k, v in SALIENCY[w.source].items() if k != "batch_size"}}


rule saliency:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
    output:
        saliency="results/saliency/{source}/{split}/{shard}.h5",
        problems="results/saliency/{source}/{split}/{shard}.problems.tsv",
    wildcard_constraints:
        source=MAP_SOURCES,
    params:
        cfg=saliency_params,
        classes=CLASSES,
        code=code_hash("pipeline.saliency"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "results/logs/saliency/{source}/{split}/{shard}.log",
    script:
        "../scripts/saliency.py"


rule saliency_detector:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
    output:
        saliency="results/saliency/{source}/{split}/{shard}.h5",
        problems="results/saliency/{source}/{split}/{shard}.problems.tsv",
    wildcard_constraints:
        source=DETECTOR_SOURCES,
    params:
        cfg=saliency_params,
        classes=CLASSES,
        code=code_hash("pipeline.saliency"),
    threads: 2
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=60,
    log:
        "results/logs/saliency/{source}/{split}/{shard}.log",
    script:
        "../scripts/saliency.py"


rule evaluate_saliency:
    input:
        saliency=lambda w: saliency_shards(SALIENCY_ROWS[w.stage], EVAL_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", EVAL_SPLIT),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    wildcard_constraints:
        stage="|".join(SALIENCY_ROWS),
    params:
        classes=CLASSES,
        split=EVAL_SPLIT,
        code=code_hash("pipeline.saliency"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/logs/evaluate/{stage}.log",
    script:
        "../scripts/evaluate_saliency.py"
