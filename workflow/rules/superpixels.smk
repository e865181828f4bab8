# Stage superpixels: an int32 region map per image (pipeline/superpixels.py), for MCOF's seeds
# and RegionNet, under results/superpixels/<split>/<shard>.h5 (`show` draws the boundaries).


rule superpixels:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
    output:
        superpixels="results/superpixels/{split}/{shard}.h5",
        problems="results/superpixels/{split}/{shard}.problems.tsv",
    log:
        "results/logs/superpixels/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/superpixels/{split}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg={
            "method": CFG["superpixels"]["method"],
            CFG["superpixels"]["method"]: CFG["superpixels"][CFG["superpixels"]["method"]],
        },
        classes=CLASSES,
        code=code_hash("pipeline.superpixels"),
    script:
        "../scripts/superpixels.py"
