# EPS (pipeline/eps.py): the C + 1 classifier trained with the saliency loss, under
# results/eps/<saliency source>/tau<tau>/ (model.pt; its CAMs by make_cams under cam/).
# Row eps uses saliency.source and eps.tau; the target `eps_ablation` trains every tau of
# eps.ablation_tau and every source of saliency.ablation_sources next to it, with each tau's
# mIoU on the training split, where a config's tau is to be chosen (column `chosen`).

EPS = CFG["eps"]


rule train_eps:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        saliency=lambda w: saliency_shards(w.source, TRAIN_SPLIT),
        init=plan.CLASSIFIER if EPS["init_from_classifier"] else [],
        pretrained=backbone_weights("classifier", EPS["init_from_classifier"]),
    output:
        model="results/eps/{source}/tau{tau}/model.pt",
        history="results/eps/{source}/tau{tau}/history.json",
        problems="results/eps/{source}/tau{tau}/problems.tsv",
    log:
        "results/logs/train_eps/{source}/tau{tau}.log",
    benchmark:
        "results/benchmarks/train_eps/{source}/tau{tau}.tsv"
    wildcard_constraints:
        source=one_of(plan.SALIENCY_SOURCES),
        tau=r"[0-9.]+",
    priority: EARLY
    threads: share_of_cores(8)
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    params:
        cfg={**SGD_RECIPE, "epochs": EPS["epochs"] or CFG["classifier"]["epochs"]},
        eps=lambda w: {"tau": float(w.tau), "lam": EPS["lam"], "init_from_classifier": EPS["init_from_classifier"]},
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/eps_{w.source}_tau{w.tau}.pt",
        code=code_hash("pipeline.eps"),
    script:
        "../scripts/train_eps.py"


rule eps_ablation:
    """CAM mIoU (and the context classes' IoU) for every tau and saliency source."""
    input:
        rows=expand("results/metrics/{stage}.json", stage=PLAN.eps_ablation_rows),
        cam="results/metrics/cam.json",
        saliency=expand("results/metrics/{stage}.json", stage=PLAN.saliency_rows),
        # the same rows on the training split, where tau is chosen
        train=[path for row in PLAN.eps_ablation_rows for path in PLAN.train_metrics(row)],
    output:
        "results/metrics/eps_ablation.tsv",
    log:
        "results/logs/eps_ablation.log",
    benchmark:
        "results/benchmarks/eps_ablation.tsv"
    localrule: True
    params:
        runs=PLAN.eps_ablation_runs,
        code=code_hash("pipeline.ablations"),
    run:
        from pipeline.ablations import eps_table

        table = eps_table(input.rows, params.runs, input.cam, input.saliency, output[0], input.train)
        show_table(f"EPS ablation ({output[0]}; mIoU and IoU in %)", table, log[0])
