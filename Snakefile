# Weakly-supervised semantic segmentation pipeline: the entry point.
#   snakemake                                  the embedded default (config/config.yaml)
#   snakemake --configfile config/voc.yaml     another dataset (replaces config.yaml)
# The workflow itself is workflow/Snakefile (Snakemake's standard layout); plain `snakemake`
# uses every core through profiles/default.

# (include: with its rule `all` kept as the default target)
workflow.include("workflow/Snakefile", overwrite_default_target=True)
