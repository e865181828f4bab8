# Stage train_segmenter: DeepLab (LargeFOV / ASPP) on the pseudo masks of the training split
# (pipeline/train_segmenter.py); `fully_supervised` is the same recipe on the ground truth.
# Its resumable checkpoint lives outside the declared outputs, under results/checkpoints/.

from pipeline.manifest import GROUND_TRUTH  # torch-free: building the DAG imports no torch

SEG = CFG["segmenter"]
# segmenter.source: a stage's masks, or {folder: DIR} of PNG label maps made elsewhere (source `folder`)
MASK_FOLDER = SEG["source"]["folder"] if isinstance(SEG["source"], dict) else None
SEG_SOURCE = "folder" if MASK_FOLDER else SEG["source"]
if MASK_FOLDER and not Path(MASK_FOLDER).is_dir():
    raise ValueError(f"segmenter.source.folder: {MASK_FOLDER} is not a folder (of <image_id>.png label maps)")
# segmenter name -> (head, the masks it learns from)
SEGMENTERS = {f"deeplab_{head}": (head, SEG_SOURCE) for head in SEG["heads"]}
if SEG["fully_supervised"] and has_masks(TRAIN_SPLIT):
    SEGMENTERS["fully_supervised"] = (SEG["heads"][0], GROUND_TRUTH)
MASK_SOURCES.update({row: f"results/{row}/{{split}}/{{shard}}.h5" for row in [*RW_ROWS, "rw_crf"]})
if SEG_SOURCE != "folder" and SEG_SOURCE not in MASK_SOURCES:
    raise ValueError(f"segmenter.source: {SEG_SOURCE} is not made by this configuration "
                     f"(choose one of {sorted(MASK_SOURCES)}; sccam_rw needs sccam.enabled, eps_rw eps.enabled)")
# what defines the training (inference settings and the choice of rows do not)
SEG_TRAINING = {k: v for k, v in SEG.items()
                if k not in ("heads", "source", "fully_supervised", "test_scales", "test_flip", "crf_profile")}
# every segmenter train_segmenter makes: name -> (training settings, the masks it learns from)
SEGMENTER_RUNS = {name: ({**SEG_TRAINING, "head": head}, source) for name, (head, source) in SEGMENTERS.items()}
SEGMENTER_RUNS.update({name: ({**SEG_TRAINING, **run["train"]}, run["source"])
                       for name, run in ROUND_SEGMENTERS.items()})


def folder_masks():
    """The training split's masks in segmenter.source.folder (those missing are rows of the
    segmenter's problems file, not missing inputs)."""
    return [str(p) for r in MANIFESTS[TRAIN_SPLIT] if (p := Path(MASK_FOLDER) / f"{r.image_id}.png").is_file()]


def segmenter_masks(name):
    source = SEGMENTER_RUNS[name][1]
    if source == "folder":
        return folder_masks()
    return [] if source == GROUND_TRUTH else shard_files(MASK_SOURCES[source], TRAIN_SPLIT)


rule train_segmenter:
    input:
        split_data(TRAIN_SPLIT),
        manifest=f"results/manifest/{TRAIN_SPLIT}.tsv",
        masks=lambda w: segmenter_masks(w.segmenter),
        classifier=rules.train_classifier.output.model if SEG["init_from_classifier"] else [],
        pretrained=backbone_weights("segmenter", SEG["init_from_classifier"]),
    output:
        model="results/segmenter/{segmenter}/model.pt",
        history="results/segmenter/{segmenter}/history.json",
        problems="results/segmenter/{segmenter}/problems.tsv",
    wildcard_constraints:
        segmenter="|".join(SEGMENTER_RUNS),
    params:
        cfg=lambda w: SEGMENTER_RUNS[w.segmenter][0],
        source=lambda w: SEGMENTER_RUNS[w.segmenter][1],
        folder=lambda w: MASK_FOLDER if SEGMENTER_RUNS[w.segmenter][1] == "folder" else None,
        seed=CFG["seed"],
        classes=CLASSES,
        checkpoint=lambda w: f"results/checkpoints/{w.segmenter}.pt",
        code=code_hash("pipeline.train_segmenter"),
    threads: 8
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=720,
    log:
        "results/logs/train_segmenter/{segmenter}.log",
    script:
        "../scripts/train_segmenter.py"
