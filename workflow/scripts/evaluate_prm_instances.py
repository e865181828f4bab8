# Adapter: rule evaluate_prm_instances -> pipeline.evaluate_instances.run
from pipeline import evaluate_instances
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p = snakemake.params
    evaluate_instances.run(manifest_paths=snakemake.input.manifests, instance_paths=snakemake.input.instances,
                           classes=p.classes, split=p.split, threshold=p.threshold,
                           out_path=snakemake.output.metrics, problems_path=snakemake.output.problems)
