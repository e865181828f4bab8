# MCOF (Wang et al., CVPR 2018): a bottom-up / top-down loop on the training split, in rounds.
#   mcof_seeds       initial seeds: CAMs averaged per superpixel (pipeline/mcof.py)
#                                                    -> results/mcof_seeds/<split>/<shard>.h5
#   mcof_features    the CAM classifier's features pooled per superpixel, once for all rounds
#                    (pipeline/regionnet.py)         -> results/mcof/features/<split>/<shard>.h5
# per round r:
#   train_regionnet  RegionNet on round r's seed superpixels (round 1: the initial seeds;
#                    round r > 1: PixelNet r - 1's predictions)  -> results/mcof/r<r>/regionnet.pt
#   mcof_regionnet   RegionNet's regions of every superpixel     -> results/mcof/r<r>/regionnet/...
#   mcof_saliency    round 1 only: single-class images refined with the saliency map
#                    (pipeline/mcof_saliency.py)     -> results/mcof/r1/saliency/...
#   PixelNet         segmenter mcof_pixelnet_r<r> (DeepLab-LargeFOV by default, train_segmenter)
#                    on those masks; its predictions on the training split (segment) are
#                    the row mcof_pixelnet_r<r> and round r + 1's seeds.
# Rows: mcof_seeds, mcof_regionnet_r<r>, mcof_saliency, mcof_pixelnet_r<r> on the training
# split; `mcof`, the last PixelNet's predictions on the evaluation split.
# Target `mcof_ablation`: the paper's control, segmenters selftrain_r<r> (rounds r >= 2) retrained
# on their own predictions from round 1's PixelNet (no RegionNet, no saliency)
# -> results/metrics/mcof_ablation.tsv.

MCOF = CFG["mcof"]


rule mcof_seeds:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        cams="results/cam/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
    output:
        seeds="results/mcof_seeds/{split}/{shard}.h5",
        problems="results/mcof_seeds/{split}/{shard}.problems.tsv",
    log:
        "results/logs/mcof_seeds/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/mcof_seeds/{split}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=MCOF["seeds"],
        code=code_hash("pipeline.mcof"),
    script:
        "../scripts/mcof_seeds.py"


rule mcof_features:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        classifier=plan.CLASSIFIER,
        superpixels="results/superpixels/{split}/{shard}.h5",
    output:
        features="results/mcof/features/{split}/{shard}.h5",
        problems="results/mcof/features/{split}/{shard}.problems.tsv",
    log:
        "results/logs/mcof_features/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/mcof_features/{split}/{shard}.tsv"
    threads: share_of_cores(4)
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    params:
        code=code_hash("pipeline.regionnet"),
    script:
        "../scripts/mcof_features.py"


rule train_regionnet:
    input:
        features=shard_files("results/mcof/features/{split}/{shard}.h5", TRAIN_SPLIT),
        superpixels=shard_files("results/superpixels/{split}/{shard}.h5", TRAIN_SPLIT),
        labels=lambda w: shard_files(PLAN.regionnet_labels(w.round)[0], TRAIN_SPLIT),
    output:
        model="results/mcof/r{round}/regionnet.pt",
        history="results/mcof/r{round}/regionnet_history.json",
    log:
        "results/logs/train_regionnet/r{round}.log",
    benchmark:
        "results/benchmarks/train_regionnet/r{round}.tsv"
    threads: share_of_cores(2)
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        cfg=MCOF["regionnet"],
        label_stage=lambda w: PLAN.regionnet_labels(w.round)[1],
        classes=CLASSES,
        seed=CFG["seed"],
        code=code_hash("pipeline.regionnet"),
    script:
        "../scripts/train_regionnet.py"


rule mcof_regionnet:
    input:
        features="results/mcof/features/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
        model="results/mcof/r{round}/regionnet.pt",
    output:
        regions="results/mcof/r{round}/regionnet/{split}/{shard}.h5",
    log:
        "results/logs/mcof_regionnet/r{round}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/mcof_regionnet/r{round}/{split}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=code_hash("pipeline.regionnet"),
    script:
        "../scripts/mcof_regionnet.py"


rule mcof_saliency:
    input:
        regions="results/mcof/r1/regionnet/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
        saliency=f"results/saliency/{PLAN.saliency_source}/{{split}}/{{shard}}.h5",
    output:
        masks="results/mcof/r1/saliency/{split}/{shard}.h5",
    log:
        "results/logs/mcof_saliency/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/mcof_saliency/{split}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg={k: v for k, v in MCOF["saliency"].items() if k != "enabled"},
        code=code_hash("pipeline.mcof_saliency"),
    script:
        "../scripts/mcof_saliency.py"


rule mcof_ablation:
    """MCOF's chain and its PixelNet rounds against as many rounds of plain self-training."""
    input:
        expand("results/metrics/{stage}.json", stage=[*PLAN.mcof_train_rows, *PLAN.selftrain_rows]),
    output:
        "results/metrics/mcof_ablation.tsv",
    log:
        "results/logs/mcof_ablation.log",
    benchmark:
        "results/benchmarks/mcof_ablation.tsv"
    localrule: True
    params:
        code=code_hash("pipeline.ablations"),
    run:
        from pipeline.ablations import metric_rows_table

        Path(log[0]).write_text(metric_rows_table(input, output[0]))
