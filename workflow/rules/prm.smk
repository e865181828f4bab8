# PRM (Zhou et al., CVPR 2018): instance masks from peak response maps.
#   train_prm      the CAM classifier retrained with peak stimulation (pipeline/prm.py)
#                                                    -> results/prm/model.pt
#   prm_peaks      peaks of the image's classes and their peak response maps (PRMs)
#                                                    -> results/prm/peaks/<split>/<shard>.h5
#   prm_instances  superpixel-merge proposals scored against each PRM, NMS; the semantic mask
#                  is each class's instances united (pipeline/prm_instances.py)
#                                                    -> results/prm/instances/<split>/<shard>.h5
# Row `prm` (the semantic masks, evaluation split); results/metrics/prm_instances.json holds
# mAP^r at mask IoU 0.5 (pipeline/evaluate_instances.py) where the split has instance maps.

PRM = CFG["prm"]
PRM_PEAK_CFG = {
    k: PRM[k] for k in ("window", "median_filter", "sub_pixel_factor", "peak_threshold", "backprop", "classes")
} | ({"class_threshold": PRM["class_threshold"]} if PRM["classes"] == "predicted" else {})


rule train_prm:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        init=plan.CLASSIFIER if PRM["init_from_classifier"] else [],
        pretrained=backbone_weights("classifier", PRM["init_from_classifier"]),
    output:
        model="results/prm/model.pt",
        history="results/prm/history.json",
        problems="results/prm/problems.tsv",
    log:
        "results/logs/train_prm.log",
    benchmark:
        "results/benchmarks/train_prm.tsv"
    threads: share_of_cores(8)
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    params:
        cfg={**SGD_RECIPE, "epochs": PRM["epochs"] or CFG["classifier"]["epochs"]},
        prm={k: PRM[k] for k in ("window", "median_filter", "sub_pixel_factor")},
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint="results/checkpoints/prm.pt",
        code=code_hash("pipeline.prm"),
    script:
        "../scripts/train_prm.py"


rule prm_peaks:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        model="results/prm/model.pt",
    output:
        peaks="results/prm/peaks/{split}/{shard}.h5",
        problems="results/prm/peaks/{split}/{shard}.problems.tsv",
    log:
        "results/logs/prm_peaks/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/prm_peaks/{split}/{shard}.tsv"
    threads: share_of_cores(4)
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        cfg=PRM_PEAK_CFG,
        code=code_hash("pipeline.prm"),
    script:
        "../scripts/prm_peaks.py"


rule prm_instances:
    input:
        lambda w: split_data(w.split),
        peaks="results/prm/peaks/{split}/{shard}.h5",
        superpixels="results/superpixels/{split}/{shard}.h5",
    output:
        instances="results/prm/instances/{split}/{shard}.h5",
    log:
        "results/logs/prm_instances/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/prm_instances/{split}/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        cfg=PRM["instances"],
        code=code_hash("pipeline.prm_instances"),
    script:
        "../scripts/prm_instances.py"


rule evaluate_prm_instances:
    input:
        instances=shard_files("results/prm/instances/{split}/{shard}.h5", EVAL_SPLIT),
        manifests=shard_files("results/manifest/{split}/{shard}.tsv", EVAL_SPLIT),
    output:
        metrics="results/metrics/prm_instances.json",
        problems="results/metrics/prm_instances.problems.tsv",
    log:
        "results/logs/evaluate/prm_instances.log",
    benchmark:
        "results/benchmarks/evaluate_prm_instances/prm_instances.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        classes=CLASSES,
        split=EVAL_SPLIT,
        threshold=PRM["instances"]["iou_threshold"],
        code=code_hash("pipeline.evaluate_instances"),
    script:
        "../scripts/evaluate_prm_instances.py"
