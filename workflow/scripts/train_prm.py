# Adapter: rule train_prm -> pipeline.prm.train
from pipeline import prm
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p, out = snakemake.params, snakemake.output
    prm.train(manifest_path=snakemake.input.manifest, classifier_path=snakemake.input.init or None,
              classes=p.classes, cfg=p.cfg, prm=p.prm, seed=p.seed, compute=snakemake.config["compute"],
              code_hash=p.code, model_path=out.model, history_path=out.history, problems_path=out.problems,
              checkpoint_path=p.checkpoint)
