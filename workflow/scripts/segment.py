# Adapter: rule segment -> pipeline.segment.run
from pipeline import segment
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p, w = snakemake.params, snakemake.wildcards
    segment.run(manifest_path=snakemake.input.manifest, model_path=snakemake.input.model, cfg=p.cfg,
                device=snakemake.config["compute"]["device"], code_hash=p.code, stage=w.segmenter, split=w.split,
                shard=w.shard, out_path=snakemake.output.masks, png_dir=snakemake.output.png,
                problems_path=snakemake.output.problems)
