# Adapter: rule evaluate_masks -> pipeline.evaluate.evaluate_masks
from pipeline import evaluate
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    evaluate.evaluate_masks(manifest_paths=snakemake.input.manifests, mask_paths=snakemake.input.masks,
                            classes=p.classes, split=p.split, stage=w.stage, artifact_stage=p.artifact_stage,
                            out_path=snakemake.output.metrics, problems_path=snakemake.output.problems,
                            sweep=p.sweep, chosen_on=snakemake.input.get("chosen") or None)
