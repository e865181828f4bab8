# Adapter: rule train_regionnet -> pipeline.regionnet.run_train
from pipeline import regionnet
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p = snakemake.params
    regionnet.run_train(feature_paths=snakemake.input.features, superpixel_paths=snakemake.input.superpixels,
                        label_paths=snakemake.input.labels, label_stage=p.label_stage, classes=p.classes, cfg=p.cfg,
                        seed=p.seed, model_path=snakemake.output.model, history_path=snakemake.output.history)
