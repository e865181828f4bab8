# Adapter: rule saliency -> pipeline.saliency.run
from pipeline import saliency
from pipeline.logs import stage_logging

with stage_logging(snakemake.log[0]):
    p, w = snakemake.params, snakemake.wildcards
    if p.cfg["source"] == "u2netp":  # the only torch source: its CPU threads are the job's
        from pipeline.training import configure_torch

        configure_torch(snakemake.threads)
    # how u2netp runs (device, batch size) comes from the config, not params: it reruns nothing
    saliency.run(manifest_path=snakemake.input.manifest, cfg=p.cfg, classes=p.classes, code_hash=p.code,
                 split=w.split, shard=w.shard, out_path=snakemake.output.saliency,
                 problems_path=snakemake.output.problems, device=snakemake.config["compute"]["device"],
                 batch_size=snakemake.config["saliency"]["u2netp"]["batch_size"])
