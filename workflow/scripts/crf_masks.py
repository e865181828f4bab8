# Adapter: rule crf_masks -> pipeline.crf_masks.run
from pipeline import crf_masks
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    crf_masks.run(manifest_path=snakemake.input.manifest, source_path=snakemake.input.source, source_stage=w.source,
                  stage=f"{w.source}_crf", profile=p.profile, workers=snakemake.threads, code_hash=p.code,
                  split=w.split, shard=w.shard, out_path=snakemake.output.masks, png_dir=snakemake.output.png,
                  problems_path=snakemake.output.problems)
