# Stage train_classifier: the multi-label CAM classifier (pipeline/train_classifier.py).
# Its resumable checkpoint lives outside the declared outputs, under results/checkpoints/.


rule train_classifier:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        # missing or damaged, it stops the run before work starts; changed, it retrains
        pretrained=backbone_weights("classifier"),
    output:
        model=plan.CLASSIFIER,
        history="results/classifier/history.json",
        problems="results/classifier/problems.tsv",
    log:
        "results/logs/train_classifier.log",
    benchmark:
        "results/benchmarks/train_classifier.tsv"
    priority: EARLY
    threads: share_of_cores(8)
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    params:
        cfg=CFG["classifier"],
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint="results/checkpoints/classifier.pt",
        code=code_hash("pipeline.train_classifier"),
    script:
        "../scripts/train_classifier.py"
