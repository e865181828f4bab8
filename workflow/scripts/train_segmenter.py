# Adapter: rule train_segmenter -> pipeline.train_segmenter.run
from pipeline import train_segmenter
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    p = snakemake.params
    train_segmenter.run(manifest_path=snakemake.input.manifest, mask_paths=snakemake.input.masks, source=p.source,
                        classes=p.classes, cfg=p.cfg, seed=p.seed, compute=snakemake.config["compute"],
                        code_hash=p.code, classifier_path=snakemake.input.classifier or None,
                        model_path=snakemake.output.model, history_path=snakemake.output.history,
                        problems_path=snakemake.output.problems, checkpoint_path=p.checkpoint, mask_folder=p.folder)
