# Adapter: rule mcof_saliency -> pipeline.mcof_saliency.run
from pipeline import mcof_saliency
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    w = snakemake.wildcards
    mcof_saliency.run(region_path=snakemake.input.regions, superpixel_path=snakemake.input.superpixels,
                      saliency_path=snakemake.input.saliency, cfg=snakemake.params.cfg, code_hash=snakemake.params.code,
                      split=w.split, shard=w.shard, out_path=snakemake.output.masks)
