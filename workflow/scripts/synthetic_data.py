# Adapter: rule synthetic_data -> pipeline.datasets.synthetic.generate
from pipeline.datasets import synthetic
from pipeline.logs import progress, stage_logging

with stage_logging(snakemake.log[0]):
    cfg = snakemake.params.cfg
    total = sum(cfg["n_images"].values())
    synthetic.generate(cfg, list(cfg["n_images"]), snakemake.output[0], threads=snakemake.threads,
                       progress=lambda it: progress(it, total=total, desc="synthetic_data", unit="img"))
