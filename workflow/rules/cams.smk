# Stage make_cams: multi-scale CAMs per shard (pipeline/make_cams.py), stored as HDF5.


rule make_cams:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        model=rules.train_classifier.output.model,
    output:
        cams="results/cam/{split}/{shard}.h5",
        problems="results/cam/{split}/{shard}.problems.tsv",
    params:
        cfg=CFG["cams"],
        code=code_hash("pipeline.make_cams"),
    threads: 4
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "results/logs/make_cams/{split}/{shard}.log",
    script:
        "../scripts/make_cams.py"
