# Stage evaluate: mIoU of each evaluated stage (pipeline/evaluate.py) and the results table
# results/metrics/summary.tsv (pipeline/summary.py), one row per stage.


rule evaluate_cams:
    input:
        cams=lambda w: shard_files(f"results/{PLAN.all_cam_rows[w.stage]}/{{split}}/{{shard}}.h5", EVAL_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", EVAL_SPLIT),
        report=lambda w: PLAN.cam_reports.get(PLAN.all_cam_rows[w.stage], []),
        chosen=lambda w: PLAN.chosen_on(w.stage),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_cams/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(PLAN.all_cam_rows),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        thresholds=CFG["evaluation"]["bg_threshold"],
        classes=CLASSES,
        split=EVAL_SPLIT,
        code=code_hash("pipeline.evaluate"),
    script:
        "../scripts/evaluate_cams.py"


rule evaluate_masks:
    input:
        masks=lambda w: shard_files(PLAN.all_mask_stages[w.stage][0], PLAN.all_mask_stages[w.stage][1]),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", PLAN.all_mask_stages[w.stage][1]),
        chosen=lambda w: PLAN.chosen_on(w.stage),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_masks/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(PLAN.all_mask_stages),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classes=CLASSES,
        split=lambda w: PLAN.all_mask_stages[w.stage][1],
        artifact_stage=lambda w: PLAN.artifact_stages.get(w.stage, w.stage),
        # stages that store score maps with a constant background score also get the sweep
        sweep=lambda w: CFG["evaluation"]["bg_threshold"] if w.stage in PLAN.score_stages else None,
        code=code_hash("pipeline.evaluate"),
    script:
        "../scripts/evaluate_masks.py"


# The same rows on the training split, where their background threshold is chosen
rule evaluate_cams_on_train:
    input:
        cams=lambda w: shard_files(f"results/{PLAN.all_cam_rows[w.stage]}/{{split}}/{{shard}}.h5", TRAIN_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", TRAIN_SPLIT),
        report=lambda w: PLAN.cam_reports.get(PLAN.all_cam_rows[w.stage], []),
    output:
        metrics="results/metrics/train_split/{stage}.json",
        problems="results/metrics/train_split/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/train_split/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_cams_on_train/train_split/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(sorted(set(PLAN.all_cam_rows) & PLAN.threshold_rows)),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        thresholds=CFG["evaluation"]["bg_threshold"],
        classes=CLASSES,
        split=TRAIN_SPLIT,
        code=code_hash("pipeline.evaluate"),
    script:
        "../scripts/evaluate_cams.py"


# Label maps on the training split, where a setting is chosen: the walks' background threshold,
# the segmenter ablation's learning rate
rule evaluate_masks_on_train:
    input:
        masks=lambda w: shard_files(plan.artifact(w.stage), TRAIN_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", TRAIN_SPLIT),
    output:
        metrics="results/metrics/train_split/{stage}.json",
        problems="results/metrics/train_split/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/train_split/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_masks_on_train/train_split/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(sorted(PLAN.train_scored_rows)),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classes=CLASSES,
        split=TRAIN_SPLIT,
        artifact_stage=lambda w: w.stage,
        sweep=lambda w: CFG["evaluation"]["bg_threshold"] if w.stage in PLAN.score_stages else None,
        code=code_hash("pipeline.evaluate"),
    script:
        "../scripts/evaluate_masks.py"


# A segmenter's masks on its training split against the pseudo masks it learned from (no ground
# truth): how closely it fits them, a criterion for its settings where the split with ground
# truth is the one reported
rule evaluate_agreement:
    input:
        masks=lambda w: shard_files(plan.artifact(w.stage), TRAIN_SPLIT),
        source=lambda w: shard_files(PLAN.mask_sources[PLAN.agreement_sources[w.stage]], TRAIN_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", TRAIN_SPLIT),
    output:
        metrics="results/metrics/agreement/{stage}.json",
        problems="results/metrics/agreement/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/agreement/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_agreement/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(sorted(PLAN.agreement_sources)),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classes=CLASSES,
        split=TRAIN_SPLIT,
        source_stage=lambda w: PLAN.agreement_sources[w.stage],
        code=code_hash("pipeline.evaluate"),
    script:
        "../scripts/evaluate_agreement.py"


rule evaluate_mask_folder:
    """A folder of PNG masks made elsewhere (segmenter.source: {folder: DIR}) against the split's ground truth."""
    input:
        masks=lambda w: folder_masks(),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", PLAN.folder_rows[w.stage][1]),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    log:
        "results/logs/evaluate/{stage}.log",
    benchmark:
        "results/benchmarks/evaluate_mask_folder/{stage}.tsv"
    wildcard_constraints:
        stage=one_of(PLAN.folder_rows),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        folder=lambda w: PLAN.folder_rows[w.stage][0],
        classes=CLASSES,
        split=lambda w: PLAN.folder_rows[w.stage][1],
        code=code_hash("pipeline.mask_folders"),
    script:
        "../scripts/evaluate_mask_folder.py"


rule summary:
    input:
        expand("results/metrics/{stage}.json", stage=PLAN.evaluated_stages),
    output:
        "results/metrics/summary.tsv",
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    localrule: True
    params:
        image_labels=PLAN.image_labels,
        code=code_hash("pipeline.summary"),
    run:
        from pipeline.summary import write_summary

        Path(log[0]).write_text(write_summary(input, output[0], params.image_labels))
