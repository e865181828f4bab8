# Adapter: rule evaluate_masks -> pipeline.evaluate.evaluate_masks
from pipeline import evaluate
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    # the row's metrics on the training split, where its threshold is chosen (an input list of 0 or 1)
    chosen = snakemake.input.get("chosen")
    chosen_on = chosen if isinstance(chosen, str) else (chosen[0] if chosen else None)
    p, w = snakemake.params, snakemake.wildcards
    evaluate.evaluate_masks(manifest_paths=snakemake.input.manifests, mask_paths=snakemake.input.masks,
                            classes=p.classes, split=p.split, stage=w.stage, artifact_stage=p.artifact_stage,
                            out_path=snakemake.output.metrics, problems_path=snakemake.output.problems,
                            sweep=p.sweep,
                            chosen_on=chosen_on)
