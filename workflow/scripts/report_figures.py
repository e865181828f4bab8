# Adapter: rule report_figures -> pipeline.report.run
from pipeline import manifest as mf
from pipeline import report
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, out = snakemake.params, snakemake.output
    records = {split: [] for split in p.ids}
    for path in snakemake.input.manifests:
        split = path.split("/")[-2]  # results/manifest/<split>/<shard>.tsv
        records[split] += mf.read_tsv(path)
    report.run(records=records, montage_ids_by_split=p.ids, stages=p.stages,
               metric_paths=dict(zip(p.stages, snakemake.input.metrics)),
               saliency_metric_paths=list(snakemake.input.saliency), histories=p.histories,
               prm=p.prm, class_names=p.classes, config=snakemake.config, image_labels=p.image_labels,
               outputs={"table": out.table, "saliency_table": out.saliency_table,
                        "saliency_curves": out.saliency_curves,
                        "montages": dict(zip(p.stages, out.montages)),
                        "overviews": dict(zip(p.ids, out.overviews)), "curves": dict(zip(p.histories, out.curves)),
                        "instances": out.instances[0] if out.instances else None,
                        "config": out.config, "versions": out.versions})
