# Stage affinity_labels: confident foreground / background of the training CAMs, refined by
# the dense CRF (pipeline/affinity_labels.py); they supervise AffinityNet.


rule affinity_labels:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        cams="results/cam/{split}/{shard}.h5",
    output:
        labels="results/affinity_labels/{split}/{shard}.h5",
        problems="results/affinity_labels/{split}/{shard}.problems.tsv",
    log:
        "results/logs/affinity_labels/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/affinity_labels/{split}/{shard}.tsv"
    threads: 8  # CRF processes
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        cfg=CFG["affinity_labels"],
        profile=crf_profile(affinity_labels_profile()),
        classes=CLASSES,
        code=code_hash("pipeline.affinity_labels"),
    script:
        "../scripts/affinity_labels.py"
