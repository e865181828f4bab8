# Adapter: rule synthetic_data -> pipeline.datasets.synthetic.generate
from pipeline.datasets import synthetic
from pipeline.logs import progress, stage_logging

with stage_logging(snakemake.log[0]):
    cfg, split = snakemake.params.cfg, snakemake.wildcards.split
    synthetic.generate(cfg, split, snakemake.output[0], threads=snakemake.threads,
                       progress=lambda it: progress(it, total=cfg["n_images"][split], desc=f"synthetic_data {split}",
                                                    unit="img"))
