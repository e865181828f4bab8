# Adapter: rule evaluate_saliency -> pipeline.saliency.evaluate_saliency
from pipeline import saliency
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p = snakemake.params
    saliency.evaluate_saliency(manifest_paths=snakemake.input.manifests, saliency_paths=snakemake.input.saliency,
                               classes=p.classes, split=p.split, stage=snakemake.wildcards.stage,
                               out_path=snakemake.output.metrics, problems_path=snakemake.output.problems)
