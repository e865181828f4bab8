# Stage segment: a trained segmenter's multi-scale + flip predictions per shard
# (pipeline/segment.py): probabilities on the stride-8 grid and label maps in HDF5, PNG label maps.
# On the evaluation split by default; on the training split when a later stage asks for it
# (a round segmenter's predictions there, the next round's seeds, use its own `predict` settings).


def segment_cfg(name, split):
    if name in ROUND_SEGMENTERS and split == TRAIN_SPLIT:
        return ROUND_SEGMENTERS[name]["predict"]
    return {"scales": SEG["test_scales"], "flip": SEG["test_flip"]}


rule segment:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        model="results/segmenter/{segmenter}/model.pt",
    output:
        masks="results/{segmenter}/{split}/{shard}.h5",
        png=directory("results/{segmenter}/{split}/png/{shard}"),
        problems="results/{segmenter}/{split}/{shard}.problems.tsv",
    wildcard_constraints:
        segmenter="|".join(SEGMENTER_RUNS),
    params:
        cfg=lambda w: segment_cfg(w.segmenter, w.split),
        code=code_hash("pipeline.segment"),
    threads: 4
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    log:
        "results/logs/segment/{segmenter}/{split}/{shard}.log",
    script:
        "../scripts/segment.py"
