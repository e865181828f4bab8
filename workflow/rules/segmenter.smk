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
        segmenter="|".join(PLAN.segmenter_runs),
    threads: 8
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
