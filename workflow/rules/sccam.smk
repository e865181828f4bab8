# SC-CAM (pipeline/sccam.py, pipeline/train_sccam.py): per round r, under results/sccam/k<k>/r<r>/,
#   sccam_features  pooled features of the training images from round r - 1's classifier
#                   (round 1: the plain classifier)            -> features/<shard>.h5
#   sccam_clusters  k-means per parent class                   -> clusters.h5, clusters.json, embedding.png
#   train_sccam     the two-head classifier of round r         -> model.pt (its CAMs: make_cams, cam/)
# k is part of the path, so another k builds its own rounds next to the others and the plain
# classifier is never retrained; the rows sccam_r1 ... use sccam.k, the ablation target
# `sccam_ablation` every k of sccam.ablation_k.

SCCAM = CFG["sccam"]
SCCAM_ROUNDS = list(range(1, SCCAM["rounds"] + 1))


def sccam_dir(k, round_):
    return f"results/sccam/k{k}/r{round_}"


def sccam_cams(k, round_):
    """The CAM directory (under results/) of an SC-CAM round, as make_cams names it."""
    return f"sccam/k{k}/r{round_}/cam"


# CAM rows of SC-CAM: row -> CAM directory under results/
SCCAM_ROWS = {f"sccam_r{r}": sccam_cams(SCCAM["k"], r) for r in SCCAM_ROUNDS} if SCCAM["enabled"] else {}
SCCAM_ABLATION_ROWS = {f"sccam_k{k}_r{r}": sccam_cams(k, r) for k in SCCAM["ablation_k"] for r in SCCAM_ROUNDS}
for _k in {SCCAM["k"], *SCCAM["ablation_k"]}:
    for _r in SCCAM_ROUNDS:
        CAM_MODELS[sccam_cams(_k, _r)] = f"{sccam_dir(_k, _r)}/model.pt"
        CAM_REPORTS[sccam_cams(_k, _r)] = f"{sccam_dir(_k, _r)}/clusters.json"


def previous_classifier(w):
    round_ = int(w.round)
    return "results/classifier/model.pt" if round_ == 1 else f"{sccam_dir(w.k, round_ - 1)}/model.pt"


wildcard_constraints:
    k=r"\d+",
    round=r"\d+",


rule sccam_features:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}/{{shard}}.tsv",
        model=previous_classifier,
    output:
        features="results/sccam/k{k}/r{round}/features/{shard}.h5",
        problems="results/sccam/k{k}/r{round}/features/{shard}.problems.tsv",
    params:
        split=TRAIN_SPLIT,
        code=code_hash("pipeline.sccam"),
    threads: 4
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    log:
        "results/logs/sccam_features/k{k}/r{round}/{shard}.log",
    script:
        "../scripts/sccam_features.py"


rule sccam_clusters:
    input:
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        features=lambda w: expand("results/sccam/k{k}/r{round}/features/{shard}.h5", k=w.k, round=w.round,
                                  shard=SHARDS[TRAIN_SPLIT]),
    output:
        clusters="results/sccam/k{k}/r{round}/clusters.h5",
        report="results/sccam/k{k}/r{round}/clusters.json",
        picture=report("results/sccam/k{k}/r{round}/embedding.png", category="4. Methods", subcategory="SC-CAM",
                       labels={"figure": "embedding", "k": "{k}", "round": "{round}"}, caption="../report/sccam.rst"),
    params:
        cfg=lambda w: {"k": int(w.k), **{key: SCCAM[key] for key in ("max_iter", "n_init", "embedding")}},
        seed=CFG["seed"],
        classes=CLASSES,
        split=TRAIN_SPLIT,
        code=code_hash("pipeline.sccam"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    log:
        "results/logs/sccam_clusters/k{k}/r{round}.log",
    script:
        "../scripts/sccam_clusters.py"


rule train_sccam:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        clusters="results/sccam/k{k}/r{round}/clusters.h5",
        previous=previous_classifier if SCCAM["init_from_previous"] else [],
        pretrained=backbone_weights("classifier", SCCAM["init_from_previous"]),
    output:
        model="results/sccam/k{k}/r{round}/model.pt",
        history="results/sccam/k{k}/r{round}/history.json",
        problems="results/sccam/k{k}/r{round}/problems.tsv",
    params:
        cfg={**CFG["classifier"], "epochs": SCCAM["epochs"] or CFG["classifier"]["epochs"]},
        sccam={key: SCCAM[key] for key in ("sub_weight", "dropout", "init_from_previous")},
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/sccam_k{w.k}_r{w.round}.pt",
        code=code_hash("pipeline.train_sccam"),
    threads: 8
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    log:
        "results/logs/train_sccam/k{k}/r{round}.log",
    script:
        "../scripts/train_sccam.py"


rule sccam_ablation:
    """CAM mIoU and cluster purity for every k of sccam.ablation_k and every round."""
    input:
        expand("results/metrics/{stage}.json", stage=SCCAM_ABLATION_ROWS),
    output:
        "results/metrics/sccam_ablation.tsv",
    params:
        code=code_hash("pipeline.sccam"),
    localrule: True
    log:
        "results/logs/sccam_ablation.log",
    run:
        from pipeline.sccam import write_ablation

        table = write_ablation(input, output[0])
        Path(log[0]).write_text(table)
        print(f"\nSC-CAM ablation ({output[0]}; CAM mIoU in %):\n{table}")
