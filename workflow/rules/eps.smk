# EPS (pipeline/eps.py): the C + 1 classifier trained with the saliency loss, under
# results/eps/<saliency source>/tau<tau>/ (model.pt; its CAMs by make_cams under cam/).
# Row eps uses saliency.source and eps.tau; the target `eps_ablation` trains every tau of
# eps.ablation_tau and every source of saliency.ablation_sources next to it.

EPS = CFG["eps"]


def eps_cams(source, tau):
    """The CAM directory (under results/) of an EPS model, as make_cams names it."""
    return f"eps/{source}/tau{tau:g}/cam"


EPS_ROWS = {"eps": eps_cams(SALIENCY["source"], EPS["tau"])} if EPS["enabled"] else {}
EPS_ABLATION_ROWS = {f"eps_{SALIENCY['source']}_tau{t:g}": eps_cams(SALIENCY["source"], t) for t in EPS["ablation_tau"]}
EPS_ABLATION_ROWS.update({f"eps_{s}_tau{EPS['tau']:g}": eps_cams(s, EPS["tau"]) for s in SALIENCY["ablation_sources"]})
for _cams in {**EPS_ROWS, **EPS_ABLATION_ROWS}.values():
    CAM_MODELS[_cams] = f"results/{_cams.removesuffix('/cam')}/model.pt"


rule train_eps:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        saliency=lambda w: saliency_shards(w.source, TRAIN_SPLIT),
        init="results/classifier/model.pt" if EPS["init_from_classifier"] else [],
        pretrained=backbone_weights("classifier", EPS["init_from_classifier"]),
    output:
        model="results/eps/{source}/tau{tau}/model.pt",
        history="results/eps/{source}/tau{tau}/history.json",
        problems="results/eps/{source}/tau{tau}/problems.tsv",
    wildcard_constraints:
        source=SALIENCY_SOURCES,
        tau=r"[0-9.]+",
    params:
        cfg={**CFG["classifier"], "epochs": EPS["epochs"] or CFG["classifier"]["epochs"]},
        eps=lambda w: {"tau": float(w.tau), "lam": EPS["lam"], "init_from_classifier": EPS["init_from_classifier"]},
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/eps_{w.source}_tau{w.tau}.pt",
        code=code_hash("pipeline.eps"),
    threads: 8
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=480,
    log:
        "results/logs/train_eps/{source}/tau{tau}.log",
    script:
        "../scripts/train_eps.py"


rule eps_ablation:
    """CAM mIoU (and the context classes' IoU) for every tau and saliency source."""
    input:
        rows=expand("results/metrics/{stage}.json", stage=EPS_ABLATION_ROWS),
        cam="results/metrics/cam.json",
        saliency=expand("results/metrics/{stage}.json", stage=SALIENCY_ROWS),
    output:
        "results/metrics/eps_ablation.tsv",
    params:
        code=code_hash("pipeline.eps"),
    localrule: True
    log:
        "results/logs/eps_ablation.log",
    run:
        from pipeline.eps import write_ablation

        table = write_ablation(input.rows, input.cam, input.saliency, output[0])
        Path(log[0]).write_text(table)
        print(f"\nEPS ablation ({output[0]}; mIoU and IoU in %):\n{table}")
