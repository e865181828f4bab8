# Adapter: rule evaluate_cams -> pipeline.evaluate.evaluate_cams
from pipeline import evaluate
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p = snakemake.params
    evaluate.evaluate_cams(manifest_paths=snakemake.input.manifests, cam_paths=snakemake.input.cams,
                           classes=p.classes, thresholds=p.thresholds, split=p.split, stage="cam",
                           out_path=snakemake.output.metrics, problems_path=snakemake.output.problems)
