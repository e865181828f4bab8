# Adapter: rule make_cams -> pipeline.make_cams.run
from pipeline import make_cams
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p, w = snakemake.params, snakemake.wildcards
    make_cams.run(manifest_path=snakemake.input.manifest, model_path=snakemake.input.model, cfg=p.cfg,
                  device=snakemake.config["compute"]["device"], code_hash=p.code, split=w.split, shard=w.shard,
                  out_path=snakemake.output.cams, problems_path=snakemake.output.problems)
