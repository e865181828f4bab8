# Stage report: the figures and tables of `snakemake --report report.html` (pipeline/report.py):
# the results table, the saliency table and precision-recall curves of every saliency source
# (rows of saliency.smk's PLAN.saliency_rows), a montage per evaluated stage (the same images in each, report.montage)
# and one per split with every stage side by side, training curves, PRM's instances, the
# config and versions of the run. SC-CAM's embedding pictures are flagged in sccam.smk.
REPORT_DIR = "results/report"
# split -> the images its montages draw
MONTAGE_IDS = {split: montage_images(split) for split in dict.fromkeys(s["split"] for s in PLAN.report_stages.values())}


rule report_figures:
    input:
        manifests=lambda w: [
            f for split in MONTAGE_IDS for f in shard_files("results/manifest/{split}/{shard}.tsv", split)
        ],
        metrics=expand("results/metrics/{stage}.json", stage=PLAN.report_stages),
        saliency=expand("results/metrics/{stage}.json", stage=PLAN.saliency_rows),
        # the stages' artifacts (PRM's instances among them: row prm)
        artifacts=lambda w: [f for s in PLAN.report_stages.values() for f in shard_files(s["pattern"], s["split"])],
        histories=list(PLAN.histories.values()),
    output:
        table=report(f"{REPORT_DIR}/results.html", category="1. Results", caption="../report/results.rst"),
        saliency_table=report(f"{REPORT_DIR}/saliency.html", category="1. Results", caption="../report/saliency.rst"),
        saliency_curves=report(f"{REPORT_DIR}/saliency_pr.png", category="1. Results", caption="../report/saliency.rst"),
        montages=[
            report(
                f"{REPORT_DIR}/montages/{row}.png",
                category="2. Montages",
                subcategory=s["split"],
                labels={"stage": row, "split": s["split"]},
                caption="../report/montage.rst",
            )
            for row, s in PLAN.report_stages.items()
        ],
        overviews=[
            report(
                f"{REPORT_DIR}/montages/all_stages_{split}.png",
                category="2. Montages",
                subcategory=split,
                labels={"stage": "all, side by side", "split": split},
                caption="../report/montage.rst",
            )
            for split in MONTAGE_IDS
        ],
        curves=[
            report(
                f"{REPORT_DIR}/curves/{model}.png",
                category="3. Training curves",
                labels={"model": model},
                caption="../report/curves.rst",
            )
            for model in PLAN.histories
        ],
        instances=(
            [
                report(
                    f"{REPORT_DIR}/prm_instances.png",
                    category="4. Methods",
                    subcategory="PRM",
                    labels={"figure": "instances"},
                    caption="../report/prm.rst",
                )
            ]
            if PLAN.prm_rows
            else []
        ),
        config=report(
            f"{REPORT_DIR}/config.yaml",
            category="5. Run",
            labels={"file": "config (completed)"},
            caption="../report/run.rst",
        ),
        versions=report(
            f"{REPORT_DIR}/versions.tsv", category="5. Run", labels={"file": "versions"}, caption="../report/run.rst"
        ),
    log:
        "results/logs/report_figures.log",
    benchmark:
        "results/benchmarks/report_figures.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        ids=MONTAGE_IDS,
        stages=lambda w: {
            row: {
                "kind": s["kind"],
                "split": s["split"],
                "stage": s["stage"],
                "shards": shard_files(s["pattern"], s["split"]),
            }
            for row, s in PLAN.report_stages.items()
        },
        histories=PLAN.histories,
        image_labels=PLAN.image_labels,
        prm=lambda w: (
            {"split": EVAL_SPLIT, "shards": shard_files(PLAN.prm_rows["prm"], EVAL_SPLIT)} if PLAN.prm_rows else None
        ),
        classes=CLASSES,
        code=code_hash("pipeline.report"),
    script:
        "../scripts/report_figures.py"
