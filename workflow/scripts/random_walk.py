# Adapter: rule random_walk -> pipeline.random_walk.run
from pipeline import random_walk
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p, w = snakemake.params, snakemake.wildcards
    random_walk.run(manifest_path=snakemake.input.manifest, cam_path=snakemake.input.cams,
                    model_path=snakemake.input.model, cfg=p.cfg, device=snakemake.config["compute"]["device"],
                    code_hash=p.code, stage=w.rw, split=w.split, shard=w.shard, out_path=snakemake.output.masks,
                    png_dir=snakemake.output.png, problems_path=snakemake.output.problems)
