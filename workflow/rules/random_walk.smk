# Stage random_walk: the chosen CAMs propagated over AffinityNet's affinities with sparse
# products (pipeline/random_walk.py): pseudo masks per shard in HDF5 and as PNG label maps.


rule random_walk:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        cams=cam_source(CFG["random_walk"]["source"]),
        model=rules.train_affinity.output.model,
    output:
        masks="results/rw/{split}/{shard}.h5",
        png=directory("results/rw/{split}/png/{shard}"),
        problems="results/rw/{split}/{shard}.problems.tsv",
    params:
        cfg={k: v for k, v in CFG["random_walk"].items() if k != "crf_profile"},
        code=code_hash("pipeline.random_walk"),
    threads: 4
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "results/logs/random_walk/{split}/{shard}.log",
    script:
        "../scripts/random_walk.py"
