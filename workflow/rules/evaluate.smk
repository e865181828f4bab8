# Stage evaluate: mIoU of each evaluated stage (pipeline/evaluate.py) and the results table
# results/metrics/summary.tsv (pipeline/summary.py), one row per stage.

# Stages evaluated as label maps (pipeline.evaluate.evaluate_masks): stage -> (artifact pattern,
# split). Affinity labels are made for the training split, so they are evaluated there.
MASK_STAGES = {row: (f"results/{row}/{{split}}/{{shard}}.h5", EVAL_SPLIT) for row in RW_ROWS}
MASK_STAGES["rw_crf"] = ("results/rw_crf/{split}/{shard}.h5", EVAL_SPLIT)
# the pseudo masks the segmenters learn from, where the training split has ground truth
# (masks from a folder: row segmenter_masks by rule evaluate_mask_folder)
if has_masks(TRAIN_SPLIT) and not MASK_FOLDER:
    MASK_STAGES["segmenter_masks"] = (MASK_SOURCES[SEG_SOURCE], TRAIN_SPLIT)
# deeplab_<head> with and without the CRF; fully_supervised (ground-truth trained, an upper
# bound) compares with the segmenters' own rows, so it gets no CRF row.
for _name, (_head, _source) in SEGMENTERS.items():
    MASK_STAGES[_name] = (f"results/{_name}/{{split}}/{{shard}}.h5", EVAL_SPLIT)
    if _source != GROUND_TRUTH:
        MASK_STAGES[f"{_name}_crf"] = (f"results/{_name}_crf/{{split}}/{{shard}}.h5", EVAL_SPLIT)
# MCOF: its last PixelNet on the evaluation split
if MCOF_ROUNDS:
    MASK_STAGES["mcof"] = (MCOF_TRAIN_ROWS[f"mcof_pixelnet_r{MCOF_ROUNDS[-1]}"], EVAL_SPLIT)
# PRM: its instances united per class, on the evaluation split
MASK_STAGES.update({row: (pattern, EVAL_SPLIT) for row, pattern in PRM_ROWS.items()})
# rows of the training split's pseudo masks: affinity labels, MCOF's chain
if has_masks(TRAIN_SPLIT):
    _train_rows = {"affinity_labels": ("results/affinity_labels/{split}/{shard}.h5", TRAIN_SPLIT)}
    _train_rows.update({row: (pattern, TRAIN_SPLIT) for row, pattern in MCOF_TRAIN_ROWS.items()})
    MASK_STAGES = {**_train_rows, **MASK_STAGES}
# built on request only (target mcof_ablation)
ALL_MASK_STAGES = {**MASK_STAGES, **{row: (pattern, TRAIN_SPLIT) for row, pattern in SELFTRAIN_ROWS.items()}}
# Stages evaluated as CAMs (best background threshold): row -> CAM directory under results/.
CAM_ROWS = {"cam": "cam", **SCCAM_ROWS, **EPS_ROWS}
ALL_CAM_ROWS = {**CAM_ROWS, **SCCAM_ABLATION_ROWS, **EPS_ABLATION_ROWS}  # the ablation's rows are built on request only
# rows of folders of PNG masks: row -> (folder, split)
FOLDER_ROWS = {"segmenter_masks": (MASK_FOLDER, TRAIN_SPLIT)} if MASK_FOLDER and has_masks(TRAIN_SPLIT) else {}
EVALUATED_STAGES = [*CAM_ROWS, *MASK_STAGES, *FOLDER_ROWS]
# rows whose artifacts are another stage's: row -> the stage that wrote them
ARTIFACT_STAGES = {"segmenter_masks": SEG_SOURCE}
if MCOF_ROUNDS:
    ARTIFACT_STAGES["mcof"] = f"mcof_pixelnet_r{MCOF_ROUNDS[-1]}"
SCORE_STAGES = set(RW_ROWS)


def cam_report(row):
    """The method's report of a CAM row (SC-CAM: cluster sizes, purity), [] if none."""
    return CAM_REPORTS.get(ALL_CAM_ROWS[row], [])


rule evaluate_cams:
    input:
        cams=lambda w: shard_files(f"results/{ALL_CAM_ROWS[w.stage]}/{{split}}/{{shard}}.h5", EVAL_SPLIT),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", EVAL_SPLIT),
        report=lambda w: cam_report(w.stage),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    wildcard_constraints:
        stage="|".join(ALL_CAM_ROWS),
    params:
        thresholds=CFG["evaluation"]["bg_threshold"],
        classes=CLASSES,
        split=EVAL_SPLIT,
        code=code_hash("pipeline.evaluate"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/logs/evaluate/{stage}.log",
    script:
        "../scripts/evaluate_cams.py"


rule evaluate_masks:
    input:
        masks=lambda w: shard_files(ALL_MASK_STAGES[w.stage][0], ALL_MASK_STAGES[w.stage][1]),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", ALL_MASK_STAGES[w.stage][1]),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    wildcard_constraints:
        stage="|".join(ALL_MASK_STAGES),
    params:
        classes=CLASSES,
        split=lambda w: ALL_MASK_STAGES[w.stage][1],
        artifact_stage=lambda w: ARTIFACT_STAGES.get(w.stage, w.stage),
        # stages that store score maps with a constant background score also get the sweep
        sweep=lambda w: CFG["evaluation"]["bg_threshold"] if w.stage in SCORE_STAGES else None,
        code=code_hash("pipeline.evaluate"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/logs/evaluate/{stage}.log",
    script:
        "../scripts/evaluate_masks.py"


rule evaluate_mask_folder:
    """A folder of PNG masks made elsewhere (segmenter.source: {folder: DIR}) against the split's ground truth."""
    input:
        masks=lambda w: folder_masks(),
        manifests=lambda w: shard_files("results/manifest/{split}/{shard}.tsv", FOLDER_ROWS[w.stage][1]),
    output:
        metrics="results/metrics/{stage}.json",
        problems="results/metrics/{stage}.problems.tsv",
    wildcard_constraints:
        stage="|".join(FOLDER_ROWS) or "^$",
    params:
        folder=lambda w: FOLDER_ROWS[w.stage][0],
        classes=CLASSES,
        split=lambda w: FOLDER_ROWS[w.stage][1],
        code=code_hash("pipeline.mask_folders"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/logs/evaluate/{stage}.log",
    script:
        "../scripts/evaluate_mask_folder.py"


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
