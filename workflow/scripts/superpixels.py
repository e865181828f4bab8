# Adapter: rule superpixels -> pipeline.superpixels.run
from pipeline import superpixels
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    superpixels.run(manifest_path=snakemake.input.manifest, cfg=p.cfg, classes=p.classes, code_hash=p.code,
                    split=w.split, shard=w.shard, out_path=snakemake.output.superpixels,
                    problems_path=snakemake.output.problems)
