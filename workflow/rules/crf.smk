# Stage crf_masks: the dense CRF on top of a stage that stores score maps (pipeline/crf_masks.py):
# rw -> rw_crf, deeplab_aspp -> deeplab_aspp_crf, ... Label maps per shard in HDF5 and as PNG
# label maps.


rule crf_masks:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        source="results/{source}/{split}/{shard}.h5",
    output:
        masks="results/{source}_crf/{split}/{shard}.h5",
        png=directory("results/{source}_crf/{split}/png/{shard}"),
        problems="results/{source}_crf/{split}/{shard}.problems.tsv",
    log:
        "results/logs/crf_masks/{source}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/crf_masks/{source}/{split}/{shard}.tsv"
    wildcard_constraints:
        source=one_of(PLAN.crf_sources),
    threads: share_of_cores(8)  # CRF processes
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        profile=lambda w: crf_profile(PLAN.crf_sources[w.source]),
        code=code_hash("pipeline.crf_masks"),
    script:
        "../scripts/crf_masks.py"
