# Stage report: the figures and tables of `snakemake --report report.html` (pipeline/report.py):
# the results table, the saliency table and precision-recall curves of every saliency source
# (rows of saliency.smk's SALIENCY_ROWS), a montage per evaluated stage (the same images in each, report.montage)
# and one per split with every stage side by side, training curves, PRM's instances, the
# config and versions of the run. SC-CAM's embedding pictures are flagged in sccam.smk.
from pipeline.report import montage_ids

REPORT_CFG = CFG["report"]["montage"]
REPORT_DIR = "results/report"


def _montage_ids(split):
    listed = REPORT_CFG["ids"].get(split)
    if listed is None:
        return montage_ids(MANIFESTS[split], REPORT_CFG["n_images"], REPORT_CFG["seed"])
    unknown = sorted(set(listed) - {r.image_id for r in MANIFESTS[split]})
    if unknown:
        raise ValueError(f"report.montage.ids: {', '.join(unknown[:5])} not in the manifest of split {split!r}")
    return sorted(listed)


# row -> what its montage draws: CAM rows (heat map + labels) and mask rows, on their split
REPORT_STAGES = {row: {"kind": "cam", "split": EVAL_SPLIT, "pattern": f"results/{cam_dir}/{{split}}/{{shard}}.h5",
                       "stage": "cam"} for row, cam_dir in CAM_ROWS.items()}
REPORT_STAGES.update({row: {"kind": "mask", "split": split, "pattern": pattern, "stage": ARTIFACT_STAGES.get(row, row)}
                      for row, (pattern, split) in MASK_STAGES.items()})
MONTAGE_IDS = {split: _montage_ids(split) for split in dict.fromkeys(s["split"] for s in REPORT_STAGES.values())}
# trained model -> its history: the CAM classifiers (plain, SC-CAM rounds, EPS), AffinityNet,
# the segmenters (MCOF's PixelNet rounds too), RegionNet per round, PRM
HISTORIES = {("classifier" if row == "cam" else row): str(Path(CAM_MODELS[cam_dir]).with_name("history.json"))
             for row, cam_dir in CAM_ROWS.items()}
HISTORIES["affinity"] = "results/affinity/history.json"
HISTORIES.update({name: f"results/segmenter/{name}/history.json" for name in SEGMENTERS})
HISTORIES.update({f"mcof_pixelnet_r{r}": f"results/segmenter/mcof_pixelnet_r{r}/history.json" for r in MCOF_ROUNDS})
HISTORIES.update({f"mcof_regionnet_r{r}": f"results/mcof/r{r}/regionnet_history.json" for r in MCOF_ROUNDS})
if PRM_ROWS:
    HISTORIES["prm"] = "results/prm/history.json"


rule report_figures:
    input:
        manifests=lambda w: [f for split in MONTAGE_IDS for f in shard_files("results/manifest/{split}/{shard}.tsv", split)],
        metrics=expand("results/metrics/{stage}.json", stage=REPORT_STAGES),
        saliency=expand("results/metrics/{stage}.json", stage=SALIENCY_ROWS),
        # the stages' artifacts (PRM's instances among them: row prm)
        artifacts=lambda w: [f for s in REPORT_STAGES.values() for f in shard_files(s["pattern"], s["split"])],
        histories=list(HISTORIES.values()),
    output:
        table=report(f"{REPORT_DIR}/results.html", category="1. Results", caption="../report/results.rst"),
        saliency_table=report(f"{REPORT_DIR}/saliency.html", category="1. Results", caption="../report/saliency.rst"),
        saliency_curves=report(f"{REPORT_DIR}/saliency_pr.png", category="1. Results",
                               caption="../report/saliency.rst"),
        montages=[report(f"{REPORT_DIR}/montages/{row}.png", category="2. Montages", subcategory=s["split"],
                         labels={"stage": row, "split": s["split"]}, caption="../report/montage.rst")
                  for row, s in REPORT_STAGES.items()],
        overviews=[report(f"{REPORT_DIR}/montages/all_stages_{split}.png", category="2. Montages", subcategory=split,
                          labels={"stage": "all, side by side", "split": split}, caption="../report/montage.rst")
                   for split in MONTAGE_IDS],
        curves=[report(f"{REPORT_DIR}/curves/{model}.png", category="3. Training curves", labels={"model": model},
                       caption="../report/curves.rst") for model in HISTORIES],
        instances=[report(f"{REPORT_DIR}/prm_instances.png", category="4. Methods", subcategory="PRM",
                          labels={"figure": "instances"}, caption="../report/prm.rst")] if PRM_ROWS else [],
        config=report(f"{REPORT_DIR}/config.yaml", category="5. Run", labels={"file": "config (completed)"},
                      caption="../report/run.rst"),
        versions=report(f"{REPORT_DIR}/versions.tsv", category="5. Run", labels={"file": "versions"},
                        caption="../report/run.rst"),
    params:
        ids=MONTAGE_IDS,
        stages=lambda w: {row: {"kind": s["kind"], "split": s["split"], "stage": s["stage"],
                                "shards": shard_files(s["pattern"], s["split"])} for row, s in REPORT_STAGES.items()},
        histories=HISTORIES,
        prm=lambda w: {"split": EVAL_SPLIT, "shards": shard_files(PRM_ROWS["prm"], EVAL_SPLIT)} if PRM_ROWS else None,
        classes=CLASSES,
        code=code_hash("pipeline.report"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "results/logs/report_figures.log",
    script:
        "../scripts/report_figures.py"
