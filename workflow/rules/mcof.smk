# MCOF (pipeline/mcof.py). Built so far: mcof_seeds, the initial seeds of the training
# images from their CAMs averaged per superpixel (superpixels.smk), stored as label maps
# (`mask`: class values, 0 background, 255 undecided) under results/mcof_seeds/<split>/.

MCOF = CFG["mcof"]
if MCOF["seeds"]["threshold"] < MCOF["seeds"]["bg_threshold"]:
    raise ValueError(f"mcof.seeds.threshold ({MCOF['seeds']['threshold']}) is below mcof.seeds.bg_threshold "
                     f"({MCOF['seeds']['bg_threshold']}): seeds above the threshold would become background")


rule mcof_seeds:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        cams="results/cam/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
    output:
        seeds="results/mcof_seeds/{split}/{shard}.h5",
        problems="results/mcof_seeds/{split}/{shard}.problems.tsv",
    params:
        cfg=MCOF["seeds"],
        code=code_hash("pipeline.mcof"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "results/logs/mcof_seeds/{split}/{shard}.log",
    script:
        "../scripts/mcof_seeds.py"
