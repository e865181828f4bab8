# Adapter: rule sccam_features -> pipeline.sccam_features.run_features
from pipeline import sccam_features
from pipeline.logs import stage_logging
from pipeline.training import configure_torch

with stage_logging(snakemake.log[0]):
    configure_torch(snakemake.threads)
    w = snakemake.wildcards
    sccam_features.run_features(manifest_path=snakemake.input.manifest, model_path=snakemake.input.model,
                                device=snakemake.config["compute"]["device"], code_hash=snakemake.params.code,
                                params={"k": int(w.k), "round": int(w.round)}, split=snakemake.params.split,
                                shard=w.shard, out_path=snakemake.output.features,
                                problems_path=snakemake.output.problems)
