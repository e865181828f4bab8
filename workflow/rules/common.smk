# Shared set-up, run when the workflow is parsed (before any job): the config is validated
# against workflow/schemas/config.schema.yaml and completed with its defaults; the manifests
# of the splits are built, so listing errors stop the run before work starts.
import os
import re
from pathlib import Path

from pipeline import datasets
from pipeline import manifest as mf
from pipeline import plan
from pipeline.config import DEFAULT_CONFIG, layered, scale_warning
from pipeline.provenance import code_hash
from pipeline.report import montage_ids
from pipeline.saliency import default_source
from pipeline.summary import format_table
from pipeline.weights import backbone_weights_file, verified_path
from snakemake.exceptions import WorkflowError
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
            logger.warning(
                f"{_network}.backbone: {_block['name']} trains from scratch on the {DS['name']} photos; "
                "expect CAMs close to noise with a few hundred images (the papers all start from "
                "ImageNet weights: backbone.weights: imagenet)"
            )


# the classifier's SGD recipe, by which SC-CAM, EPS and PRM train (`classifier.fit` is the CAM
# classifier's alone: changing it reruns none of them)
SGD_RECIPE = {k: v for k, v in CFG["classifier"].items() if k != "fit"}

# GPUs a network's job asks for: SLURM's --gpus; locally `--resources gpu=N` caps how many run
# at once. compute.device: cpu asks for none (CPU-only clusters and machines).
GPU = 0 if CFG["compute"]["device"] == "cpu" else 1


# The priority of the jobs on the run's longest chains, from the saliency detector and the CAM
# classifier through the CAMs and AffinityNet to the walk (EPS's and the plain one): Snakemake
# starts the ready jobs of the highest priority first, then those that fill the most cores.
# Without it such a chain could be left to the end, one training on one thread beside an idle
# core (the photo run: 30 min 13 s, about 10 of its 60 core-minutes idle). It works with every
# local job on a share of the cores (share_of_cores): a job wanting both cores of two waits
# until both are free at once, behind any one-thread job, priority or not.
EARLY = 1


def share_of_cores(most):
    """Threads of a job that computes on several cores (a shard's forward pass, a training, CRF
    processes, SC-CAM's k-means). On one machine, an even share of the cores over the shards, so
    that as many jobs run side by side: on 2 cores, two one-thread jobs did 1.4-1.6x the work of
    one two-thread job at a time (CAMs and segment on the photos; each image's reading, resizing
    and writing run on one core) and two trainings 1.17-1.28x (AffinityNet, DeepLab). On a cluster (jobs counted by
    --jobs, as the SLURM profile does; the executor is not known yet when rules are read) each
    job has CPUs of its own: `most`."""
    cores, jobs = (workflow.global_resources[k].value for k in ("_cores", "_nodes"))
    if workflow.remote_exec or jobs is not None or not isinstance(cores, int):
        return most
    return max(1, min(most, cores // DS["n_shards"]))


def one_of(names):
    """A wildcard constraint matching exactly these names (row names hold dots: 0.001); one that
    matches nothing when there are none."""
    return "|".join(map(re.escape, names)) or "^$"


def has_masks(split):
    return any(r.mask for r in MANIFESTS[split])


# Evaluation needs ground-truth masks; without them the run ends with the training pseudo masks.
CAN_EVALUATE = has_masks(EVAL_SPLIT)

if CFG["saliency"]["source"] == "auto":  # the trained detector on photographs (pipeline/saliency.py)
    CFG["saliency"]["source"] = default_source(DS["name"])
if "u2netp" in [CFG["saliency"]["source"], *CFG["saliency"]["ablation_sources"]]:
    verified_path("u2netp")  # a missing or damaged model file stops the run here, naming the file and why
# The wiring of the methods (pipeline/plan.py): rows, CAM models, mask sources, segmenters,
# random-walk sources, report stages; every rule file reads it.
PLAN = plan.build(CFG, has_masks, eval_has_instances=any(r.instances for r in MANIFESTS[EVAL_SPLIT]))
if PLAN.mask_folder and not Path(PLAN.mask_folder).is_dir():
    raise ValueError(f"segmenter.source.folder: {PLAN.mask_folder} is not a folder (of <image_id>.png label maps)")


def split_data(split):
    """The generated image folder of a split, for datasets the workflow makes itself, else []."""
    return [] if split == PREDICT_SPLIT else datasets.generated_data(DS, split)


def shard_files(pattern, split):
    return expand(pattern, split=split, shard=SHARDS[split])


def saliency_shards(source, split):
    return shard_files(f"results/saliency/{source}/{{split}}/{{shard}}.h5", split)


def folder_masks():
    """The training split's masks in segmenter.source.folder (those missing are rows of the
    segmenter's problems file, not missing inputs)."""
    return [str(p) for r in MANIFESTS[TRAIN_SPLIT] if (p := Path(PLAN.mask_folder) / f"{r.image_id}.png").is_file()]


def segmenter_masks(name):
    """The training split's masks segmenter `name` learns from, as its inputs."""
    source = PLAN.segmenter_runs[name][1]
    if source == plan.FOLDER:
        return folder_masks()
    return [] if source == mf.GROUND_TRUTH else shard_files(PLAN.mask_sources[source], TRAIN_SPLIT)


def montage_images(split):
    """The images of a split drawn in the report's montages (report.montage)."""
    montage = CFG["report"]["montage"]
    listed = montage["ids"].get(split)
    if listed is None:
        return montage_ids(MANIFESTS[split], montage["n_images"], montage["seed"])
    unknown = sorted(set(listed) - {r.image_id for r in MANIFESTS[split]})
    if unknown:
        raise ValueError(f"report.montage.ids: {', '.join(unknown[:5])} not in the manifest of split {split!r}")
    return sorted(listed)


def crf_profile(name):
    """The values of a CRF profile named in config (crf.profiles)."""
    return CFG["crf"]["profiles"][name]


def affinity_labels_profile():
    chosen = CFG["affinity_labels"]["crf_profile"]
    return CFG["affinity_labels"]["mode"] if chosen == "auto" else chosen


def default_targets():
    manifests = expand("results/manifest/{split}.tsv", split=MANIFESTS)
    if CAN_EVALUATE:
        return manifests + [
            "results/metrics/summary.tsv",
            "results/metrics/saliency.json",
            *PLAN.prm_instance_metrics,
            *rules.report_figures.output,
            *agreement_targets(),
        ]
    # without ground truth to evaluate on (your own photos): the training images' pseudo masks
    # (what the segmenters learn from) and the first segmenter's CRF-refined predictions
    pseudo = [] if PLAN.mask_folder else shard_files(PLAN.mask_sources[PLAN.seg_source], TRAIN_SPLIT)
    first_crf = f"{next(iter(PLAN.segmenters))}_crf"
    return manifests + pseudo + shard_files(plan.artifact(first_crf), EVAL_SPLIT)


def agreement_targets():
    """The main segmenters' agreement with their pseudo masks, where the training split is the one
    evaluated (their predictions there are made anyway): the criterion for their settings that
    reads no ground truth of the split reported."""
    if TRAIN_SPLIT != EVAL_SPLIT:
        return []
    return [f"results/metrics/agreement/{row}.json" for row in PLAN.default_agreement]


def show_table(title, table, log_path):
    """A local rule's table: into its log and onto the terminal."""
    Path(log_path).write_text(table)
    print(f"\n{title}:\n{table}")


SLURM_ENVVARS = ("WSSS_SLURM_PARTITION", "WSSS_SLURM_ACCOUNT")


def check_slurm_environment():
    """Stop before the first sbatch when the SLURM executor runs without partition or account."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm":
        return
    missing = [name for name in SLURM_ENVVARS if not os.environ.get(name)]
    if missing:
        raise WorkflowError(
            f"the SLURM profile takes partition and account from the environment: set {' and '.join(missing)} "
            "(export WSSS_SLURM_PARTITION=<partition> WSSS_SLURM_ACCOUNT=<account>; docs/cluster.md)"
        )


def print_summary():
    summary = Path("results/metrics/summary.tsv")
    if summary.is_file():
        print(f"\nResults ({summary}; mIoU in %):\n{format_table(summary)}\n")
