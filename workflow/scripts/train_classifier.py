# Adapter: rule train_classifier -> pipeline.train_classifier.run
from pipeline import train_classifier
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p = snakemake.params
    train_classifier.run(manifest_path=snakemake.input.manifest, classes=p.classes, cfg=p.cfg, seed=p.seed,
                         compute=snakemake.config["compute"], code_hash=p.code, model_path=snakemake.output.model,
                         history_path=snakemake.output.history, problems_path=snakemake.output.problems,
                         checkpoint_path=p.checkpoint)
