# Stage make_cams: multi-scale CAMs per shard (pipeline/make_cams.py), stored as HDF5.
# One rule for every classifier registered in CAM_MODELS (common.smk): `cam` (the plain
# classifier, results/cam/), each SC-CAM round's (results/sccam/k<k>/r<round>/cam/) and each
# EPS model's (results/eps/<saliency source>/tau<tau>/cam/).


rule make_cams:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        model=lambda w: PLAN.cam_models[w.cams],
    output:
        cams="results/{cams}/{split}/{shard}.h5",
        problems="results/{cams}/{split}/{shard}.problems.tsv",
    log:
        "results/logs/make_cams/{cams}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/make_cams/{cams}/{split}/{shard}.tsv"
    wildcard_constraints:
        cams=one_of(PLAN.cam_models),
    priority: EARLY
    threads: share_of_cores(4)
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        cfg=CFG["cams"],
        code=code_hash("pipeline.make_cams"),
    script:
        "../scripts/make_cams.py"
