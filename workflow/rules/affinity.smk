# Stage train_affinity: AffinityNet on the pairs of the affinity labels (pipeline/train_affinity.py).
# Its resumable checkpoint lives outside the declared outputs, under results/checkpoints/.


rule train_affinity:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        labels=shard_files("results/affinity_labels/{split}/{shard}.h5", TRAIN_SPLIT),
        classifier=plan.CLASSIFIER if CFG["affinity"]["init_from_classifier"] else [],
        pretrained=backbone_weights("affinity", CFG["affinity"]["init_from_classifier"]),
    output:
        model=plan.AFFINITY_NET,
        history="results/affinity/history.json",
        problems="results/affinity/problems.tsv",
    log:
        "results/logs/train_affinity.log",
    benchmark:
        "results/benchmarks/train_affinity.tsv"
    threads: 8
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    params:
        cfg=CFG["affinity"],
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint="results/checkpoints/affinity.pt",
        code=code_hash("pipeline.train_affinity"),
    script:
        "../scripts/train_affinity.py"
