# Adapter: rule mcof_regionnet -> pipeline.regionnet.run_regions
from pipeline import regionnet
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    w = snakemake.wildcards
    regionnet.run_regions(feature_path=snakemake.input.features, superpixel_path=snakemake.input.superpixels,
                          model_path=snakemake.input.model, code_hash=snakemake.params.code,
                          stage=f"mcof_regionnet_r{w.round}", split=w.split, shard=w.shard,
                          out_path=snakemake.output.regions)
