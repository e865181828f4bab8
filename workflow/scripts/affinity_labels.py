# Adapter: rule affinity_labels -> pipeline.affinity_labels.run
from pipeline import affinity_labels
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    affinity_labels.run(manifest_path=snakemake.input.manifest, cam_path=snakemake.input.cams, cfg=p.cfg,
                        profile=p.profile, classes=p.classes, workers=snakemake.threads, code_hash=p.code,
                        split=w.split, shard=w.shard, out_path=snakemake.output.labels,
                        problems_path=snakemake.output.problems)
