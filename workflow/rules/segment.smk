# Stage segment: a trained segmenter's multi-scale + flip predictions per shard
# (pipeline/segment.py): probabilities on the stride-8 grid and label maps in HDF5, PNG label maps.
# On the evaluation split by default; on the training split when a later stage asks for it
# (a round segmenter's predictions there, the next round's seeds, use its own `predict` settings).


rule segment:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        model="results/segmenter/{segmenter}/model.pt",
    output:
        masks="results/{segmenter}/{split}/{shard}.h5",
        png=directory("results/{segmenter}/{split}/png/{shard}"),
        problems="results/{segmenter}/{split}/{shard}.problems.tsv",
    log:
        "results/logs/segment/{segmenter}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/segment/{segmenter}/{split}/{shard}.tsv"
    wildcard_constraints:
        segmenter=one_of(PLAN.segmenter_runs),
    threads: share_of_cores(4)
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=240,
    params:
        cfg=lambda w: PLAN.segment_settings(w.segmenter, w.split),
        code=code_hash("pipeline.segment"),
    script:
        "../scripts/segment.py"
