# Weakly-supervised semantic segmentation pipeline: the entry point.
#   snakemake --cores all                             the embedded default (config/config.yaml)
#   snakemake --cores all --configfile config/voc.yaml another dataset (replaces config.yaml)
# Each stage is one rule file in workflow/rules/, one adapter in workflow/scripts/ and one
# module in pipeline/.

include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/classifier.smk"
include: "workflow/rules/sccam.smk"
include: "workflow/rules/saliency.smk"
include: "workflow/rules/eps.smk"
include: "workflow/rules/cams.smk"  # after the methods that register CAM directories
include: "workflow/rules/superpixels.smk"
include: "workflow/rules/mcof.smk"
include: "workflow/rules/prm.smk"
include: "workflow/rules/affinity_labels.smk"
include: "workflow/rules/affinity.smk"
include: "workflow/rules/random_walk.smk"
include: "workflow/rules/segmenter.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/crf.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"  # after evaluate: draws its rows

report: "workflow/report/workflow.rst"


rule all:
    input:
        default_targets(),
    default_target: True


onsuccess:
    print_summary()
