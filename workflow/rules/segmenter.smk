# Stage train_segmenter: DeepLab (LargeFOV / ASPP) on the pseudo masks of the training split
# (pipeline/train_segmenter.py); `fully_supervised` is the same recipe on the ground truth.
# Its resumable checkpoint lives outside the declared outputs, under results/checkpoints/.

SEG = CFG["segmenter"]


rule train_segmenter:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        masks=lambda w: segmenter_masks(w.segmenter),
        classifier=plan.CLASSIFIER if SEG["init_from_classifier"] else [],
        pretrained=backbone_weights("segmenter", SEG["init_from_classifier"]),
    output:
        model="results/segmenter/{segmenter}/model.pt",
        history="results/segmenter/{segmenter}/history.json",
        problems="results/segmenter/{segmenter}/problems.tsv",
    log:
        "results/logs/train_segmenter/{segmenter}.log",
    benchmark:
        "results/benchmarks/train_segmenter/{segmenter}.tsv"
    wildcard_constraints:
        segmenter=one_of(PLAN.segmenter_runs),
    threads: share_of_cores(8)
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    params:
        cfg=lambda w: PLAN.segmenter_runs[w.segmenter][0],
        source=lambda w: PLAN.segmenter_runs[w.segmenter][1],
        folder=lambda w: PLAN.mask_folder if PLAN.segmenter_runs[w.segmenter][1] == "folder" else None,
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/{w.segmenter}.pt",
        code=code_hash("pipeline.train_segmenter"),
    script:
        "../scripts/train_segmenter.py"


rule segmenter_ablation:
    """The first head trained at each rate of segmenter.ablation_lr: mIoU on the evaluation split
    and on the training split, where the rate is chosen, and the agreement with the masks it
    learned from (no ground truth)."""
    input:
        rows=expand("results/metrics/{stage}.json", stage=PLAN.segmenter_ablation_runs),
        train=[path for row in PLAN.segmenter_ablation_runs for path in PLAN.train_metrics(row)],
        agreement=[
            f"results/metrics/agreement/{row}.json"
            for row in PLAN.segmenter_ablation_runs
            if row in PLAN.agreement_sources
        ],
    output:
        "results/metrics/segmenter_ablation.tsv",
    log:
        "results/logs/segmenter_ablation.log",
    benchmark:
        "results/benchmarks/segmenter_ablation.tsv"
    localrule: True
    params:
        runs=PLAN.segmenter_ablation_runs,
        code=code_hash("pipeline.ablations"),
    run:
        from pipeline.ablations import segmenter_table

        table = segmenter_table(input.rows, params.runs, output[0], input.train, input.agreement)
        show_table(f"Segmenter ablation ({output[0]}; mIoU in %)", table, log[0])
