# Stage random_walk: CAMs propagated over AffinityNet's affinities with sparse products
# (pipeline/random_walk.py): pseudo masks per shard in HDF5 and as PNG label maps.
# One row per CAM source: rw walks the plain CAMs, sccam_rw the last SC-CAM round's, eps_rw
# EPS's, each over the AffinityNet of PLAN.rw_affinity (EPS: its own, trained on its CAMs).


rule random_walk:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        cams=lambda w: f"results/{PLAN.rw_rows[w.rw]}/{w.split}/{w.shard}.h5",
        model=lambda w: plan.affinity_net(PLAN.rw_affinity[w.rw]),
    output:
        masks="results/{rw}/{split}/{shard}.h5",
        png=directory("results/{rw}/{split}/png/{shard}"),
        problems="results/{rw}/{split}/{shard}.problems.tsv",
    log:
        "results/logs/random_walk/{rw}/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/random_walk/{rw}/{split}/{shard}.tsv"
    wildcard_constraints:
        rw=one_of(PLAN.rw_rows),
    priority: EARLY
    threads: share_of_cores(4)
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=120,
    params:
        cfg=plan.walk_settings(CFG["random_walk"]),
        code=code_hash("pipeline.random_walk"),
    script:
        "../scripts/random_walk.py"
