# Adapter: rule train_affinity -> pipeline.train_affinity.run
from pipeline import train_affinity
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p = snakemake.params
    train_affinity.run(manifest_path=snakemake.input.manifest, label_paths=snakemake.input.labels,
                       classes=p.classes, cfg=p.cfg, seed=p.seed, compute=snakemake.config["compute"],
                       code_hash=p.code, classifier_path=snakemake.input.classifier or None,
                       model_path=snakemake.output.model, history_path=snakemake.output.history,
                       problems_path=snakemake.output.problems, checkpoint_path=p.checkpoint)
