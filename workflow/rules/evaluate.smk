# Stage evaluate: mIoU of each evaluated stage (pipeline/evaluate.py) and the results table
# results/metrics/summary.tsv (pipeline/summary.py), one row per stage.

EVALUATED_STAGES = ["cam"]


rule evaluate_cams:
    input:
        cams=lambda w: shard_files("results/cam/{split}/{shard}.h5", EVAL_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", EVAL_SPLIT),
    output:
        metrics="results/metrics/cam.json",
        problems="results/metrics/cam.problems.tsv",
    params:
        thresholds=CFG["evaluation"]["bg_threshold"],
        classes=CLASSES,
        split=EVAL_SPLIT,
        code=code_hash("pipeline.evaluate"),
    log:
        "results/logs/evaluate/cam.log",
    script:
        "../scripts/evaluate_cams.py"


rule summary:
    input:
        expand("results/metrics/{stage}.json", stage=EVALUATED_STAGES),
    output:
        "results/metrics/summary.tsv",
    params:
        code=code_hash("pipeline.summary"),
    localrule: True
    log:
        "results/logs/summary.log",
    run:
        from pipeline.summary import write_summary

        Path(log[0]).write_text(write_summary(input, output[0]))
