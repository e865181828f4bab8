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
# Target `mcof_ablation`: segmenters selftrain_r<r> retrained on their own predictions from
# the initial seeds (no RegionNet, no saliency), as many rounds -> results/metrics/mcof_ablation.tsv.

MCOF = CFG["mcof"]
if MCOF["seeds"]["threshold"] < MCOF["seeds"]["bg_threshold"]:
    raise ValueError(f"mcof.seeds.threshold ({MCOF['seeds']['threshold']}) is below mcof.seeds.bg_threshold "
                     f"({MCOF['seeds']['bg_threshold']}): seeds above the threshold would become background")
MCOF_ROUNDS = list(range(1, MCOF["rounds"] + 1)) if MCOF["enabled"] else []
MCOF_USES_SALIENCY = MCOF["saliency"]["enabled"]
_PIXELNET = MCOF["pixelnet"]
# PixelNet: the segmenter settings with its own head (and iterations, when set)
PIXELNET_TRAIN = {"head": _PIXELNET["head"], **({"iterations": _PIXELNET["iterations"]} if _PIXELNET["iterations"] else {})}
PIXELNET_PREDICT = {"scales": _PIXELNET["predict_scales"], "flip": _PIXELNET["predict_flip"]}


def mcof_dir(round_):
    return f"results/mcof/r{round_}"


def regionnet_labels(round_):
    """(artifact pattern, stage) of the masks round r's RegionNet learns from."""
    if int(round_) == 1:
        return "results/mcof_seeds/{split}/{shard}.h5", "mcof_seeds"
    previous = f"mcof_pixelnet_r{int(round_) - 1}"
    return f"results/{previous}/{{split}}/{{shard}}.h5", previous


def pixelnet_source(round_):
    return "mcof_saliency" if round_ == 1 and MCOF_USES_SALIENCY else f"mcof_regionnet_r{round_}"


# rows of MCOF's chain (training split), in the order of the loop: row -> artifact pattern
MCOF_TRAIN_ROWS = {"mcof_seeds": "results/mcof_seeds/{split}/{shard}.h5"} if MCOF["enabled"] else {}
for _r in MCOF_ROUNDS:
    MCOF_TRAIN_ROWS[f"mcof_regionnet_r{_r}"] = f"{mcof_dir(_r)}/regionnet/{{split}}/{{shard}}.h5"
    if _r == 1 and MCOF_USES_SALIENCY:
        MCOF_TRAIN_ROWS["mcof_saliency"] = f"{mcof_dir(1)}/saliency/{{split}}/{{shard}}.h5"
    MASK_SOURCES[pixelnet_source(_r)] = MCOF_TRAIN_ROWS[pixelnet_source(_r)]
    ROUND_SEGMENTERS[f"mcof_pixelnet_r{_r}"] = {"source": pixelnet_source(_r), "train": PIXELNET_TRAIN,
                                                "predict": PIXELNET_PREDICT}
    MCOF_TRAIN_ROWS[f"mcof_pixelnet_r{_r}"] = f"results/mcof_pixelnet_r{_r}/{{split}}/{{shard}}.h5"
# the ablation: the same segmenter, retrained on its own predictions from the initial seeds
SELFTRAIN_ROWS = {}
for _r in MCOF_ROUNDS:
    _source = "mcof_seeds" if _r == 1 else f"selftrain_r{_r - 1}"
    MASK_SOURCES[_source] = MCOF_TRAIN_ROWS["mcof_seeds"] if _r == 1 else SELFTRAIN_ROWS[_source]
    ROUND_SEGMENTERS[f"selftrain_r{_r}"] = {"source": _source, "train": PIXELNET_TRAIN,
                                            "predict": PIXELNET_PREDICT}
    SELFTRAIN_ROWS[f"selftrain_r{_r}"] = f"results/selftrain_r{_r}/{{split}}/{{shard}}.h5"


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


rule mcof_features:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        classifier=rules.train_classifier.output.model,
        superpixels="results/superpixels/{split}/{shard}.h5",
    output:
        features="results/mcof/features/{split}/{shard}.h5",
        problems="results/mcof/features/{split}/{shard}.problems.tsv",
    params:
        code=code_hash("pipeline.regionnet"),
    threads: 4
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    log:
        "results/logs/mcof_features/{split}/{shard}.log",
    script:
        "../scripts/mcof_features.py"


rule train_regionnet:
    input:
        features=shard_files("results/mcof/features/{split}/{shard}.h5", TRAIN_SPLIT),
        superpixels=shard_files("results/superpixels/{split}/{shard}.h5", TRAIN_SPLIT),
        labels=lambda w: shard_files(regionnet_labels(w.round)[0], TRAIN_SPLIT),
    output:
        model="results/mcof/r{round}/regionnet.pt",
        history="results/mcof/r{round}/regionnet_history.json",
    params:
        cfg=MCOF["regionnet"],
        label_stage=lambda w: regionnet_labels(w.round)[1],
        classes=CLASSES,
        seed=CFG["seed"],
        code=code_hash("pipeline.regionnet"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "results/logs/train_regionnet/r{round}.log",
    script:
        "../scripts/train_regionnet.py"


rule mcof_regionnet:
    input:
        features="results/mcof/features/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
        model="results/mcof/r{round}/regionnet.pt",
    output:
        regions="results/mcof/r{round}/regionnet/{split}/{shard}.h5",
    params:
        code=code_hash("pipeline.regionnet"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "results/logs/mcof_regionnet/r{round}/{split}/{shard}.log",
    script:
        "../scripts/mcof_regionnet.py"


rule mcof_saliency:
    input:
        regions="results/mcof/r1/regionnet/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
        saliency=f"results/saliency/{SALIENCY['source']}/{{split}}/{{shard}}.h5",
    output:
        masks="results/mcof/r1/saliency/{split}/{shard}.h5",
    params:
        cfg={k: v for k, v in MCOF["saliency"].items() if k != "enabled"},
        code=code_hash("pipeline.mcof_saliency"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "results/logs/mcof_saliency/{split}/{shard}.log",
    script:
        "../scripts/mcof_saliency.py"


rule mcof_ablation:
    """MCOF's chain and its PixelNet rounds against as many rounds of plain self-training."""
    input:
        expand("results/metrics/{stage}.json", stage=[*MCOF_TRAIN_ROWS, *SELFTRAIN_ROWS]),
    output:
        "results/metrics/mcof_ablation.tsv",
    params:
        code=code_hash("pipeline.summary"),
    localrule: True
    log:
        "results/logs/mcof_ablation.log",
    run:
        from pipeline.summary import write_metric_rows

        Path(log[0]).write_text(write_metric_rows(input, output[0]))
