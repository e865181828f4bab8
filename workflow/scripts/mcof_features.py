# Adapter: rule mcof_features -> pipeline.regionnet.run_features
from pipeline import regionnet
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    w = snakemake.wildcards
    regionnet.run_features(manifest_path=snakemake.input.manifest, classifier_path=snakemake.input.classifier,
                           superpixel_path=snakemake.input.superpixels, device=snakemake.config["compute"]["device"],
                           code_hash=snakemake.params.code, split=w.split, shard=w.shard,
                           out_path=snakemake.output.features, problems_path=snakemake.output.problems)
