# Adapter: rule mcof_seeds -> pipeline.mcof.run_seeds
from pipeline import mcof
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    mcof.run_seeds(manifest_path=snakemake.input.manifest, cam_path=snakemake.input.cams,
                   superpixel_path=snakemake.input.superpixels, cfg=p.cfg, code_hash=p.code, split=w.split,
                   shard=w.shard, out_path=snakemake.output.seeds, problems_path=snakemake.output.problems)
