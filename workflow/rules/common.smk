# Shared set-up, run when the workflow is parsed (before any job): the config is validated
# against workflow/schemas/config.schema.yaml and completed with its defaults; the manifests
# of the splits are built, so listing errors stop the run before work starts.
import re
from pathlib import Path

from pipeline import datasets
from pipeline import manifest as mf
from pipeline.config import DEFAULT_CONFIG, layered, scale_warning
from pipeline.provenance import code_hash
from pipeline.summary import format_table
from pipeline.weights import backbone_weights_file
from snakemake.logging import logger

# --configfile replaces config/config.yaml rather than being merged into it: each config file
# sits on the schema defaults and on what it `extends:` (pipeline/config.py); --config values
# go on top, typed.
if not workflow.overwrite_configfiles:
    workflow.configfile(str(DEFAULT_CONFIG))
CFG, CONFIG_CHAIN = layered(workflow.overwrite_configfiles or [DEFAULT_CONFIG], dict(workflow.config_settings.config))
if _scale := scale_warning(CFG, CONFIG_CHAIN):
    logger.warning(_scale)
# Jobs see the completed config as snakemake.config: the adapters read `compute` (how to run,
# which must not trigger reruns) from it, while what changes results goes through params.
config.clear()
config.update(CFG)

DS = CFG["dataset"]
CLASSES = list(datasets.class_names(DS))
TRAIN_SPLIT, EVAL_SPLIT = DS["train_split"], DS["eval_split"]
MANIFESTS, LEFT_OUT = {}, {}
for _split in datasets.splits(DS):
    MANIFESTS[_split], LEFT_OUT[_split] = datasets.build_manifest(DS, _split)
# images to predict on, without labels (config predict; target `predict` in predict.smk)
PREDICT_SPLIT, _records = datasets.predict_manifest(DS, CFG["predict"]) or (None, [])
if PREDICT_SPLIT:
    MANIFESTS[PREDICT_SPLIT], LEFT_OUT[PREDICT_SPLIT] = _records, []
SHARDS = {s: mf.split_into_shards(records, DS["n_shards"]) for s, records in MANIFESTS.items()}


def backbone_weights(network, from_classifier=False):
    """The weight file a network's backbone starts from, as a rule input (a change reruns the
    network), or [] when it starts from scratch, from the trained classifier, or from a
    torchvision file not yet in the torch hub cache (its job downloads it or stops naming it).
    A packaged file that is missing or damaged, or a local path that does not exist, stops the
    run here, before any job."""
    block = CFG[network]["backbone"]
    path = None if from_classifier else backbone_weights_file(block["name"], block["weights"])
    return [str(path)] if path is not None and path.is_file() else []


if DS["name"] != "synthetic":
    for _network in ("classifier", "affinity", "segmenter"):
        _block = CFG[_network]["backbone"]
        if _block["weights"] == "none" and not CFG[_network].get("init_from_classifier"):
            logger.warning(f"{_network}.backbone: {_block['name']} trains from scratch on the {DS['name']} photos; "
                           "expect CAMs close to noise with a few hundred images (the papers all start from "
                           "ImageNet weights: backbone.weights: imagenet)")


# GPUs a network's job asks for: SLURM's --gpus; locally `--resources gpu=N` caps how many run
# at once. compute.device: cpu asks for none (CPU-only clusters and machines).
GPU = 0 if CFG["compute"]["device"] == "cpu" else 1


def has_masks(split):
    return any(r.mask for r in MANIFESTS[split])


# Evaluation needs ground-truth masks; without them the run ends with the training pseudo masks.
CAN_EVALUATE = has_masks(EVAL_SPLIT)


wildcard_constraints:
    split="|".join(map(re.escape, MANIFESTS)),
    shard=r"shard\d+",


# CAM directory (under results/) -> the classifier whose CAMs make_cams writes there. Each
# method's rule file registers its own (classifier.smk: cam; sccam.smk: each round; eps.smk);
# cams.smk, included after them, makes CAMs for every registered directory.
CAM_MODELS = {}
# CAM directory -> a method's report added to its CAM row's metrics (SC-CAM: clusters.json)
CAM_REPORTS = {}
# Segmenters trained inside a method's rounds (MCOF's PixelNet, its self-training control):
# name -> {"source": the stage of the training-split masks it learns from, "train": overrides of
# the segmenter settings, "predict": its inference settings on the training split, whose
# predictions feed the next round}. segmenter.smk and segment.smk run them like the main ones.
ROUND_SEGMENTERS = {}
# masks a segmenter can learn from: stage -> artifact pattern (filled by the methods' rule files)
MASK_SOURCES = {}


def split_data(split):
    """The generated image folder of a split, for datasets the workflow makes itself, else []."""
    return [] if split == PREDICT_SPLIT else datasets.generated_data(DS, split)


def shard_files(pattern, split):
    return expand(pattern, split=split, shard=SHARDS[split])


def crf_profile(name):
    """The values of a CRF profile named in config (crf.profiles)."""
    return CFG["crf"]["profiles"][name]


def affinity_labels_profile():
    chosen = CFG["affinity_labels"]["crf_profile"]
    return CFG["affinity_labels"]["mode"] if chosen == "auto" else chosen


def default_targets():
    manifests = expand("results/manifest/{split}.tsv", split=MANIFESTS)
    if CAN_EVALUATE:
        return manifests + ["results/metrics/summary.tsv", "results/metrics/saliency.json", *PRM_INSTANCE_METRICS,
                            *rules.report_figures.output]
    # without ground truth to evaluate on (your own photos): the training images' pseudo masks
    # (what the segmenters learn from) and the first segmenter's CRF-refined predictions
    pseudo = [] if MASK_FOLDER else shard_files(MASK_SOURCES[SEG_SOURCE], TRAIN_SPLIT)
    return manifests + pseudo + shard_files(f"results/{next(iter(SEGMENTERS))}_crf/{{split}}/{{shard}}.h5", EVAL_SPLIT)


def print_summary():
    summary = Path("results/metrics/summary.tsv")
    if summary.is_file():
        print(f"\nResults ({summary}; mIoU in %):\n{format_table(summary)}\n")
