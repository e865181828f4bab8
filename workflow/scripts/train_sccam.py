# Adapter: rule train_sccam -> pipeline.train_sccam.run
from pipeline import train_sccam
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p, out = snakemake.params, snakemake.output
    train_sccam.run(manifest_path=snakemake.input.manifest, clusters_path=snakemake.input.clusters,
                    previous_model=snakemake.input.previous or None, classes=p.classes, cfg=p.cfg, sccam=p.sccam,
                    round_=int(snakemake.wildcards.round), seed=p.seed, compute=snakemake.config["compute"],
                    code_hash=p.code, model_path=out.model, history_path=out.history, problems_path=out.problems,
                    checkpoint_path=p.checkpoint)
