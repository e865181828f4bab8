# Stage train_affinity: AffinityNet on the pairs of the affinity labels (pipeline/train_affinity.py),
# one network per entry of PLAN.affinity_runs (results/affinity/ for the plain CAMs,
# results/eps_affinity/ for EPS's). Its resumable checkpoint lives outside the declared outputs,
# under results/checkpoints/.


rule train_affinity:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        labels=lambda w: shard_files(f"results/{plan.affinity_labels(w.affinity)}/{{split}}/{{shard}}.h5", TRAIN_SPLIT),
        classifier=plan.CLASSIFIER if CFG["affinity"]["init_from_classifier"] else [],
        pretrained=backbone_weights("affinity", CFG["affinity"]["init_from_classifier"]),
    output:
        model="results/{affinity}/model.pt",
        history="results/{affinity}/history.json",
        problems="results/{affinity}/problems.tsv",
    log:
        "results/logs/train_{affinity}.log",
    benchmark:
        "results/benchmarks/train_affinity/{affinity}.tsv"
    wildcard_constraints:
        affinity=one_of(PLAN.affinity_runs),
    priority: EARLY
    threads: share_of_cores(8)
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    params:
        cfg=CFG["affinity"],
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/{w.affinity}.pt",
        code=code_hash("pipeline.train_affinity"),
    script:
        "../scripts/train_affinity.py"
