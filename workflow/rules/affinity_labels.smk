# Stage affinity_labels: confident foreground / background of the training CAMs, refined by
# the dense CRF (pipeline/affinity_labels.py); they supervise AffinityNet. One set per
# AffinityNet of the plan: affinity_labels from the plain CAMs, eps_affinity_labels from EPS's
# (sccam_affinity_labels from SC-CAM's last round, when asked), each at the method's own IRN
# scores where eps.affinity_labels / sccam.affinity_labels set them (PLAN.affinity_label_settings).


rule affinity_labels:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        cams=lambda w: f"results/{PLAN.affinity_runs[w.affinity]}/{w.split}/{w.shard}.h5",
    output:
        labels="results/{affinity}_labels/{split}/{shard}.h5",
        problems="results/{affinity}_labels/{split}/{shard}.problems.tsv",
    log:
        "results/logs/{affinity}_labels/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/affinity_labels/{affinity}/{split}/{shard}.tsv"
    wildcard_constraints:
        affinity=one_of(PLAN.affinity_runs),
    priority: EARLY
    threads: share_of_cores(8)  # CRF processes
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        cfg=lambda w: PLAN.affinity_label_settings[w.affinity],
        profile=crf_profile(affinity_labels_profile()),
        classes=CLASSES,
        code=code_hash("pipeline.affinity_labels"),
    script:
        "../scripts/affinity_labels.py"
