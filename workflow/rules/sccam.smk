# SC-CAM (pipeline/sccam_features.py, pipeline/sccam.py, pipeline/train_sccam.py): per round r,
# under results/sccam/k<k>/r<r>/,
#   sccam_features  pooled features of the training images from round r - 1's classifier
#                   (round 1: the plain classifier)            -> features/<shard>.h5
#   sccam_clusters  k-means per parent class                   -> clusters.h5, clusters.json, embedding.png
#   train_sccam     the two-head classifier of round r         -> model.pt (its CAMs: make_cams, cam/)
# k is part of the path, so another k builds its own rounds next to the others and the plain
# classifier is never retrained; the rows sccam_r1 ... use sccam.k, the ablation target
# `sccam_ablation` every k of sccam.ablation_k, where k 0 is the control: the same rounds without
# the sub-category loss (pipeline.plan.sccam_round_settings).

SCCAM = CFG["sccam"]


wildcard_constraints:
    k=r"\d+",
    round=r"\d+",


rule sccam_features:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}/{{shard}}.tsv",
        model=lambda w: PLAN.previous_classifier(w.k, w.round),
    output:
        features="results/sccam/k{k}/r{round}/features/{shard}.h5",
        problems="results/sccam/k{k}/r{round}/features/{shard}.problems.tsv",
    log:
        "results/logs/sccam_features/k{k}/r{round}/{shard}.log",
    benchmark:
        "results/benchmarks/sccam_features/k{k}/r{round}/{shard}.tsv"
    threads: share_of_cores(4)
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    params:
        split=TRAIN_SPLIT,
        code=code_hash("pipeline.sccam_features"),
    script:
        "../scripts/sccam_features.py"


rule sccam_clusters:
    input:
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        features=lambda w: expand(
            "results/sccam/k{k}/r{round}/features/{shard}.h5", k=w.k, round=w.round, shard=SHARDS[TRAIN_SPLIT]
        ),
    output:
        clusters="results/sccam/k{k}/r{round}/clusters.h5",
        report="results/sccam/k{k}/r{round}/clusters.json",
        picture=report(
            "results/sccam/k{k}/r{round}/embedding.png",
            category="4. Methods",
            subcategory="SC-CAM",
            labels={"figure": "embedding", "k": "{k}", "round": "{round}"},
            caption="../report/sccam.rst",
        ),
    log:
        "results/logs/sccam_clusters/k{k}/r{round}.log",
    benchmark:
        "results/benchmarks/sccam_clusters/k{k}/r{round}.tsv"
    threads: share_of_cores(2)
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        cfg=lambda w: {
            "k": plan.sccam_round_settings(w.k, SCCAM)[0],
            **{key: SCCAM[key] for key in ("max_iter", "n_init", "embedding")},
        },
        seed=CFG["seed"],
        classes=CLASSES,
        split=TRAIN_SPLIT,
        code=code_hash("pipeline.sccam"),
    script:
        "../scripts/sccam_clusters.py"


rule train_sccam:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        clusters="results/sccam/k{k}/r{round}/clusters.h5",
        previous=(lambda w: PLAN.previous_classifier(w.k, w.round)) if SCCAM["init_from_previous"] else [],
        pretrained=backbone_weights("classifier", SCCAM["init_from_previous"]),
    output:
        model="results/sccam/k{k}/r{round}/model.pt",
        history="results/sccam/k{k}/r{round}/history.json",
        problems="results/sccam/k{k}/r{round}/problems.tsv",
    log:
        "results/logs/train_sccam/k{k}/r{round}.log",
    benchmark:
        "results/benchmarks/train_sccam/k{k}/r{round}.tsv"
    threads: share_of_cores(8)
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    params:
        cfg={
            **SGD_RECIPE,
            "epochs": SCCAM["epochs"] or CFG["classifier"]["epochs"],
            "lr": plan.sccam_lr(SCCAM, CFG["classifier"]),
        },
        sccam=lambda w: {
            "sub_weight": plan.sccam_round_settings(w.k, SCCAM)[1],
            **{key: SCCAM[key] for key in ("dropout", "init_from_previous")},
        },
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/sccam_k{w.k}_r{w.round}.pt",
        code=code_hash("pipeline.train_sccam"),
    script:
        "../scripts/train_sccam.py"


rule sccam_ablation:
    """CAM mIoU and cluster purity for every k of sccam.ablation_k and every round."""
    input:
        expand("results/metrics/{stage}.json", stage=PLAN.sccam_ablation_rows),
    output:
        "results/metrics/sccam_ablation.tsv",
    log:
        "results/logs/sccam_ablation.log",
    benchmark:
        "results/benchmarks/sccam_ablation.tsv"
    localrule: True
    params:
        runs=PLAN.sccam_ablation_runs,
        code=code_hash("pipeline.ablations"),
    run:
        from pipeline.ablations import sccam_table

        show_table(
            f"SC-CAM ablation ({output[0]}; CAM mIoU in %)", sccam_table(input, params.runs, output[0]), log[0]
        )
