# Adapter: rule evaluate_agreement -> pipeline.evaluate.evaluate_agreement
from pipeline import evaluate
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    evaluate.evaluate_agreement(manifest_paths=snakemake.input.manifests, mask_paths=snakemake.input.masks,
                                source_paths=snakemake.input.source, classes=p.classes, split=p.split,
                                stage=w.stage, source_stage=p.source_stage, out_path=snakemake.output.metrics,
                                problems_path=snakemake.output.problems)
