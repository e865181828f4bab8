# Adapter: rule prm_instances -> pipeline.prm_instances.run
from pipeline import prm_instances
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    w = snakemake.wildcards
    prm_instances.run(peak_path=snakemake.input.peaks, superpixel_path=snakemake.input.superpixels,
                      cfg=snakemake.params.cfg, code_hash=snakemake.params.code, split=w.split, shard=w.shard,
                      out_path=snakemake.output.instances)
