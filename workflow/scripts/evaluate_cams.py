# Adapter: rule evaluate_cams -> pipeline.evaluate.evaluate_cams
import json
from pathlib import Path

from pipeline import evaluate
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    # the row's metrics on the training split, where its threshold is chosen (an input list of 0 or 1)
    chosen = snakemake.input.get("chosen")
    chosen_on = chosen if isinstance(chosen, str) else (chosen[0] if chosen else None)
    p = snakemake.params
    # SC-CAM rows carry their round's cluster report (sizes, purity against known sub-types)
    extra = ({"clusters": json.loads(Path(snakemake.input.report).read_text())}
             if snakemake.input.get("report") else None)
    evaluate.evaluate_cams(manifest_paths=snakemake.input.manifests, cam_paths=snakemake.input.cams,
                           classes=p.classes, thresholds=p.thresholds, split=p.split, stage=snakemake.wildcards.stage,
                           out_path=snakemake.output.metrics, problems_path=snakemake.output.problems, extra=extra,
                           chosen_on=chosen_on)
