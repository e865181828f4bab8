"""The plan of the workflow: which rows, models and mask sources a configuration makes.

From the validated config this module derives, in one place, the wiring between the methods
that the rule files read: the CAM directories and the classifier behind each, the rows of the
results table with their artifacts and split, the masks each segmenter learns from (MCOF's
rounds and the self-training control included), the CAMs each random walk propagates, the
stages the dense CRF refines, the report's montages and training histories. It imports neither
Snakemake nor torch, so it is tested in milliseconds and the order in which rule files are
included does not matter; it also builds every name (row, directory) that other stages parse.

Paths are Snakemake patterns relative to the working directory, with {split} and {shard}.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .manifest import GROUND_TRUTH

# saliency sources: training-free detectors and a folder of maps (rule saliency); the trained
# detector, a network that asks for the job's GPU (rule saliency_detector)
SALIENCY_MAP_SOURCES = ("manifold_ranking", "frequency_tuned", "folder")
SALIENCY_DETECTOR_SOURCES = ("u2netp",)
SALIENCY_SOURCES = SALIENCY_MAP_SOURCES + SALIENCY_DETECTOR_SOURCES
# segmenter.source: the masks in a folder made elsewhere
FOLDER = "folder"
# the plain CAM classifier, which several methods start from; the AffinityNet of its CAMs
CLASSIFIER = "results/classifier/model.pt"
AFFINITY = "affinity"


def artifact(stage: str) -> str:
    """The per-shard HDF5 pattern of a stage that writes results/<stage>/<split>/<shard>.h5."""
    return f"results/{stage}/{{split}}/{{shard}}.h5"


# --- names of the methods' directories and rows (built here only) ---------------------------


def sccam_dir(k, round_) -> str:
    return f"results/sccam/k{k}/r{round_}"


def sccam_cams(k, round_) -> str:
    """The CAM directory (under results/) of an SC-CAM round, as make_cams names it."""
    return f"sccam/k{k}/r{round_}/cam"


def sccam_ablation_row(k, round_) -> str:
    return f"sccam_k{k}_r{round_}"


# k 0 in SC-CAM's paths and rows is the control: the same rounds (features, restarts, dropout,
# schedule) with the sub-category loss weighted 0, so that a gain of the sub-categories can be
# told from a gain of retraining alone
SCCAM_CONTROL_K = 0


def sccam_round_settings(k, sccam: dict) -> tuple[int, float]:
    """(clusters per class, sub-category loss weight) of the rounds under results/sccam/k<k>/:
    the control (k 0) clusters into one sub-category per class, which its weight 0 ignores."""
    k = int(k)
    if k == SCCAM_CONTROL_K:
        return 1, 0.0
    return k, sccam["sub_weight"]


def sccam_lr(sccam: dict, classifier: dict) -> float:
    """The learning rate of every SC-CAM round, the control's too: sccam.lr, or the classifier's
    divided by 1 + sub_weight (the loss is that many times the classifier's where the heads agree)."""
    return sccam["lr"] if sccam["lr"] is not None else classifier["lr"] / (1 + sccam["sub_weight"])


def eps_cams(source: str, tau: float) -> str:
    """The CAM directory (under results/) of an EPS model, as make_cams names it."""
    return f"eps/{source}/tau{tau:g}/cam"


def eps_ablation_row(source: str, tau: float) -> str:
    return f"eps_{source}_tau{tau:g}"


def mcof_dir(round_) -> str:
    return f"results/mcof/r{round_}"


def pixelnet(round_) -> str:
    return f"mcof_pixelnet_r{round_}"


def segmenter_lr_row(head: str, lr: float) -> str:
    return f"deeplab_{head}_lr{lr:g}"


def selftrain(round_) -> str:
    return f"selftrain_r{round_}"


def affinity_net(name: str) -> str:
    """The model of an AffinityNet: `affinity` learns from the plain CAMs' affinity labels,
    `eps_affinity` / `sccam_affinity` from those of EPS's / SC-CAM's CAMs."""
    return f"results/{name}/model.pt"


def affinity_labels(name: str) -> str:
    """The directory (under results/) of the affinity labels an AffinityNet learns from."""
    return f"{name}_labels"


@dataclass
class Plan:
    train_split: str
    eval_split: str
    saliency_source: str
    # saliency row -> its source; rows saliency_<source> are the ablation's
    saliency_rows: dict[str, str]
    # CAM directory (under results/) -> the classifier whose CAMs make_cams writes there
    cam_models: dict[str, str]
    # CAM directory -> a method's report added to its CAM row's metrics (SC-CAM: clusters.json)
    cam_reports: dict[str, str]
    sccam_rounds: list[int]
    # CAM rows (row -> CAM directory): SC-CAM's, EPS's, and their ablations' (built on request)
    sccam_rows: dict[str, str]
    sccam_ablation_rows: dict[str, str]
    # (k, round) of each SC-CAM ablation row, for its table
    sccam_ablation_runs: dict[str, tuple[int, int]]
    eps_rows: dict[str, str]
    eps_ablation_rows: dict[str, str]
    # (source, tau) of each EPS ablation row, for its table
    eps_ablation_runs: dict[str, tuple[str, float]]
    mcof_rounds: list[int]
    # rows of MCOF's chain (training split), in the order of the loop: row -> artifact pattern
    mcof_train_rows: dict[str, str]
    # the self-training control: row -> artifact pattern (training split)
    selftrain_rows: dict[str, str]
    # segmenters trained inside a method's rounds: name -> {"source", "train", "predict"}
    round_segmenters: dict[str, dict]
    # masks a segmenter can learn from: stage -> artifact pattern
    mask_sources: dict[str, str]
    # random-walk row -> the CAM directory it walks
    rw_rows: dict[str, str]
    # AffinityNet name -> the CAM directory whose affinity labels it learns from
    affinity_runs: dict[str, str]
    # AffinityNet name -> the settings of its affinity labels (affinity_labels, with a method's
    # own scores for its own CAMs)
    affinity_label_settings: dict[str, dict]
    # random-walk row -> the AffinityNet it walks over
    rw_affinity: dict[str, str]
    # segmenter.source {folder: DIR}: DIR, else None; the source's stage name
    mask_folder: str | None
    seg_source: str
    # the main segmenters: name -> (head, the masks it learns from)
    segmenters: dict[str, tuple[str, str]]
    # every segmenter train_segmenter makes: name -> (training settings, the masks it learns from)
    segmenter_runs: dict[str, tuple[dict, str]]
    # the learning-rate ablation (target segmenter_ablation): row -> its learning rate
    segmenter_ablation_runs: dict[str, float]
    # segmenter -> the stage whose pseudo masks it learns from (rule evaluate_agreement: how
    # closely its masks on the training split reproduce them); none for ground truth or a folder
    agreement_sources: dict[str, str]
    # the segmenters whose agreement is a default target where the training split is the one
    # evaluated: the main ones and MCOF's PixelNets (not the ablation rows, not the control)
    default_agreement: list[str]
    # stage refined by the dense CRF -> its CRF profile name
    crf_sources: dict[str, str]
    prm_rows: dict[str, str]
    prm_instance_metrics: list[str]
    # evaluated rows: label maps (row -> (artifact pattern, split)), CAMs (row -> CAM directory),
    # folders of PNG masks (row -> (folder, split))
    mask_stages: dict[str, tuple[str, str]]
    all_mask_stages: dict[str, tuple[str, str]]
    cam_rows: dict[str, str]
    all_cam_rows: dict[str, str]
    folder_rows: dict[str, tuple[str, str]]
    evaluated_stages: list[str]
    # row -> whether it uses the ground-truth image labels at inference (CAMs, walks, MCOF's
    # training-split chain, PRM) or not (segmenters on the evaluation split)
    image_labels: dict[str, bool]
    # rows whose artifacts another stage wrote: row -> that stage
    artifact_stages: dict[str, str]
    # rows that store score maps with a constant background score (evaluated with the sweep)
    score_stages: set[str]
    # rows whose background threshold is chosen on the training split (its metrics under
    # results/metrics/train_split/) and applied to the evaluation split
    threshold_rows: set[str]
    # label-map rows also scored on the training split (rule evaluate_masks_on_train): the
    # walks whose threshold is chosen there, the segmenter ablation whose rate is chosen there
    train_scored_rows: set[str]
    # row -> what its montage draws: kind (cam or mask), split, pattern, stage
    report_stages: dict[str, dict]
    # trained model -> its training history
    histories: dict[str, str]
    segment_predict: dict = field(default_factory=dict)

    def chosen_on(self, row: str) -> list[str]:
        """The metrics of `row` on the training split, where its threshold is chosen; [] when
        the training split has no ground truth (the row then reports its own split's best)."""
        return [f"results/metrics/train_split/{row}.json"] if row in self.threshold_rows else []

    def train_metrics(self, row: str) -> list[str]:
        """The metrics of `row` on the training split, where a setting (a threshold, EPS's tau, a
        learning rate) is chosen: its own metrics when the training split is the one evaluated;
        [] when that split has no ground truth."""
        if row in self.threshold_rows or row in self.train_scored_rows:
            return [f"results/metrics/train_split/{row}.json"]
        same_split = self.train_split == self.eval_split
        return [f"results/metrics/{row}.json"] if same_split and (row in self.all_mask_stages
                                                                 or row in self.all_cam_rows) else []

    def previous_classifier(self, k, round_) -> str:
        """The classifier SC-CAM round r starts its features (and, optionally, weights) from."""
        round_ = int(round_)
        return CLASSIFIER if round_ == 1 else f"{sccam_dir(k, round_ - 1)}/model.pt"

    def regionnet_labels(self, round_) -> tuple[str, str]:
        """(artifact pattern, stage) of the masks round r's RegionNet learns from."""
        if int(round_) == 1:
            return artifact("mcof_seeds"), "mcof_seeds"
        previous = pixelnet(int(round_) - 1)
        return artifact(previous), previous

    def segment_settings(self, name: str, split: str) -> dict:
        """Inference settings of a segmenter: a round segmenter's own on the training split
        (its predictions there are the next round's seeds), else segmenter.test_*."""
        if name in self.round_segmenters and split == self.train_split:
            return self.round_segmenters[name]["predict"]
        return self.segment_predict


def check(cfg: dict) -> None:
    """Combinations of settings the schema cannot express; a ValueError names the setting."""
    seeds = cfg["mcof"]["seeds"]
    if seeds["threshold"] < seeds["bg_threshold"]:
        raise ValueError(
            f"mcof.seeds.threshold ({seeds['threshold']}) is below mcof.seeds.bg_threshold "
            f"({seeds['bg_threshold']}): seeds above the threshold would become background"
        )
    saliency = cfg["saliency"]
    if saliency["source"] == "folder" and not saliency["folder"]["dir"]:
        raise ValueError("saliency.source is folder but saliency.folder.dir is not set")
    labels = cfg["affinity_labels"]
    if labels["mode"] == "irn":
        _check_score_order("affinity_labels.", labels)
    affinity = cfg["affinity"]
    if affinity["feature_cache"] and not affinity["freeze_backbone"]:
        raise ValueError("affinity.feature_cache needs affinity.freeze_backbone: true (a backbone that "
                         "learns changes its features every step)")


def _check_score_order(where: str, settings: dict) -> None:
    """IRN's affinity-label scores: confident foreground needs the higher one."""
    if settings["fg_threshold"] < settings["bg_threshold"]:
        raise ValueError(f"{where}fg_threshold ({settings['fg_threshold']}) is below bg_threshold "
                         f"({settings['bg_threshold']}): confident foreground needs the higher score")


def own_affinity_label_settings(cfg: dict, method: str) -> dict:
    """The settings of the affinity labels of a method's own CAMs: affinity_labels with the IRN
    scores the method sets (eps.affinity_labels / sccam.affinity_labels; null keeps the shared
    ones). A ValueError where affinity_labels.mode ignores them or foreground's score falls
    below background's."""
    labels = cfg["affinity_labels"]
    own = {k: v for k, v in cfg[method]["affinity_labels"].items() if v is not None}
    if own and labels["mode"] != "irn":
        raise ValueError(f"{method}.affinity_labels sets IRN's scores, which affinity_labels.mode "
                         f"{labels['mode']} does not use: set its fg_threshold / bg_threshold to null")
    settings = {**labels, **own}
    if own:
        _check_score_order(f"{method}.affinity_labels: ", settings)
    return settings


def build(cfg: dict, has_masks: Callable[[str], bool], eval_has_instances: bool) -> Plan:
    """The plan of a validated config (saliency.source already resolved from `auto`).
    `has_masks(split)`: whether a split has ground-truth masks; `eval_has_instances`: whether
    the evaluation split has instance maps (PRM's instance metrics need them)."""
    check(cfg)
    ds = cfg["dataset"]
    train, evaluation = ds["train_split"], ds["eval_split"]
    train_masks = has_masks(train)

    saliency = cfg["saliency"]
    source = saliency["source"]
    saliency_rows = {"saliency": source, **{f"saliency_{s}": s for s in saliency["ablation_sources"] if s != source}}

    cam_models = {"cam": CLASSIFIER}
    cam_reports = {}

    sccam = cfg["sccam"]
    sccam_rounds = list(range(1, sccam["rounds"] + 1))
    sccam_rows = {f"sccam_r{r}": sccam_cams(sccam["k"], r) for r in sccam_rounds} if sccam["enabled"] else {}
    sccam_ablation_runs = {sccam_ablation_row(k, r): (k, r) for k in sccam["ablation_k"] for r in sccam_rounds}
    sccam_ablation_rows = {row: sccam_cams(*run) for row, run in sccam_ablation_runs.items()}
    for k in {sccam["k"], *sccam["ablation_k"]}:
        for r in sccam_rounds:
            cam_models[sccam_cams(k, r)] = f"{sccam_dir(k, r)}/model.pt"
            cam_reports[sccam_cams(k, r)] = f"{sccam_dir(k, r)}/clusters.json"

    eps = cfg["eps"]
    eps_rows = {"eps": eps_cams(source, eps["tau"])} if eps["enabled"] else {}
    eps_ablation_runs = {eps_ablation_row(source, t): (source, t) for t in eps["ablation_tau"]}
    eps_ablation_runs.update({eps_ablation_row(s, eps["tau"]): (s, eps["tau"]) for s in saliency["ablation_sources"]})
    eps_ablation_rows = {row: eps_cams(*run) for row, run in eps_ablation_runs.items()}
    for cams in {**eps_rows, **eps_ablation_rows}.values():
        cam_models[cams] = f"results/{cams.removesuffix('/cam')}/model.pt"

    # MCOF: per round, RegionNet's regions (round 1: refined with saliency), then PixelNet on them
    mcof = cfg["mcof"]
    mcof_rounds = list(range(1, mcof["rounds"] + 1)) if mcof["enabled"] else []
    uses_saliency = mcof["saliency"]["enabled"]
    pixelnet_cfg = mcof["pixelnet"]
    pixelnet_train = {
        "head": pixelnet_cfg["head"],
        **({"iterations": pixelnet_cfg["iterations"]} if pixelnet_cfg["iterations"] else {}),
    }
    # on the training split the image's classes are known: predictions keep to them, as the masks do
    pixelnet_predict = {"scales": pixelnet_cfg["predict_scales"], "flip": pixelnet_cfg["predict_flip"],
                        "restrict_to_labels": True}
    mask_sources, round_segmenters = {}, {}
    mcof_train_rows = {"mcof_seeds": artifact("mcof_seeds")} if mcof["enabled"] else {}
    for r in mcof_rounds:
        mcof_train_rows[f"mcof_regionnet_r{r}"] = f"{mcof_dir(r)}/regionnet/{{split}}/{{shard}}.h5"
        if r == 1 and uses_saliency:
            mcof_train_rows["mcof_saliency"] = f"{mcof_dir(1)}/saliency/{{split}}/{{shard}}.h5"
        learns_from = "mcof_saliency" if r == 1 and uses_saliency else f"mcof_regionnet_r{r}"
        mask_sources[learns_from] = mcof_train_rows[learns_from]
        round_segmenters[pixelnet(r)] = {"source": learns_from, "train": pixelnet_train, "predict": pixelnet_predict}
        mcof_train_rows[pixelnet(r)] = artifact(pixelnet(r))
    # the paper's control: from round 1's segmentation result (PixelNet 1), the same segmenter
    # retrained on its own predictions, round after round, without RegionNet or saliency
    selftrain_rows = {}
    for r in mcof_rounds[1:]:
        learns_from = pixelnet(1) if r == 2 else selftrain(r - 1)
        mask_sources[learns_from] = mcof_train_rows[pixelnet(1)] if r == 2 else selftrain_rows[learns_from]
        round_segmenters[selftrain(r)] = {"source": learns_from, "train": pixelnet_train, "predict": pixelnet_predict}
        selftrain_rows[selftrain(r)] = artifact(selftrain(r))

    # random walks: the plain CAMs, the last SC-CAM round's, EPS's; each over the AffinityNet of
    # its own CAMs where the method trains one (own_affinity), else over the plain CAMs' one
    rw_rows, affinity_runs, rw_affinity = {"rw": "cam"}, {AFFINITY: "cam"}, {"rw": AFFINITY}
    affinity_label_settings = {AFFINITY: cfg["affinity_labels"]}
    for method, rw_row, cams in [("sccam", "sccam_rw", sccam_cams(sccam["k"], sccam["rounds"])),
                                 ("eps", "eps_rw", eps_rows.get("eps"))]:
        if cfg[method]["enabled"]:
            rw_rows[rw_row] = cams
            rw_affinity[rw_row] = AFFINITY
            if cfg[method]["own_affinity"]:
                rw_affinity[rw_row] = f"{method}_{AFFINITY}"
                affinity_runs[rw_affinity[rw_row]] = cams
                # a method's own scores count only here, where it trains its own AffinityNet
                affinity_label_settings[rw_affinity[rw_row]] = own_affinity_label_settings(cfg, method)

    seg = cfg["segmenter"]
    mask_folder = seg["source"]["folder"] if isinstance(seg["source"], dict) else None
    seg_source = FOLDER if mask_folder else seg["source"]
    segmenters = {f"deeplab_{head}": (head, seg_source) for head in seg["heads"]}
    if seg["fully_supervised"] and train_masks:
        segmenters["fully_supervised"] = (seg["heads"][0], GROUND_TRUTH)
    mask_sources.update({row: artifact(row) for row in [*rw_rows, "rw_crf"]})
    if seg_source != FOLDER and seg_source not in mask_sources:
        raise ValueError(
            f"segmenter.source: {seg_source} is not made by this configuration "
            f"(choose one of {sorted(mask_sources)}; sccam_rw needs sccam.enabled, eps_rw eps.enabled)"
        )
    # what defines the training (inference settings and the choice of rows do not)
    inference_only = ("heads", "source", "fully_supervised", "test_scales", "test_flip", "crf_profile", "ablation_lr")
    seg_training = {k: v for k, v in seg.items() if k not in inference_only}
    segmenter_runs = {name: ({**seg_training, "head": head}, src) for name, (head, src) in segmenters.items()}
    segmenter_runs.update(
        {name: ({**seg_training, **run["train"]}, run["source"]) for name, run in round_segmenters.items()}
    )
    # the first head on the same masks at each learning rate of the ablation (each trains its
    # own model, the configured rate's too)
    segmenter_ablation_runs = {segmenter_lr_row(seg["heads"][0], lr): lr for lr in seg["ablation_lr"]}
    segmenter_runs.update({row: ({**seg_training, "head": seg["heads"][0], "lr": lr}, seg_source)
                           for row, lr in segmenter_ablation_runs.items()})
    agreement_sources = {name: src for name, (_, src) in segmenter_runs.items() if src in mask_sources}
    default_agreement = [name for name in [*segmenters, *map(pixelnet, mcof_rounds)] if name in agreement_sources]

    crf_sources = {"rw": cfg["random_walk"]["crf_profile"], **dict.fromkeys(segmenters, seg["crf_profile"])}

    prm = cfg["prm"]
    prm_rows = {"prm": "results/prm/instances/{split}/{shard}.h5"} if prm["enabled"] else {}
    prm_instance_metrics = ["results/metrics/prm_instances.json"] if prm["enabled"] and eval_has_instances else []

    # rows evaluated as label maps; affinity labels and MCOF's chain on the training split
    mask_stages = {row: (artifact(row), evaluation) for row in rw_rows}
    mask_stages["rw_crf"] = (artifact("rw_crf"), evaluation)
    # the pseudo masks the segmenters learn from, where the training split has ground truth
    # (masks from a folder: row segmenter_masks of rule evaluate_mask_folder)
    if train_masks and not mask_folder:
        mask_stages["segmenter_masks"] = (mask_sources[seg_source], train)
    # deeplab_<head> with and without the CRF; fully_supervised (ground-truth trained, an upper
    # bound) compares with the segmenters' own rows, so it gets no CRF row
    for name, (_head, src) in segmenters.items():
        mask_stages[name] = (artifact(name), evaluation)
        if src != GROUND_TRUTH:
            mask_stages[f"{name}_crf"] = (artifact(f"{name}_crf"), evaluation)
    if mcof_rounds:  # MCOF: its last PixelNet on the evaluation split
        mask_stages["mcof"] = (mcof_train_rows[pixelnet(mcof_rounds[-1])], evaluation)
    mask_stages.update({row: (pattern, evaluation) for row, pattern in prm_rows.items()})
    if train_masks:
        train_rows = {"affinity_labels": (artifact("affinity_labels"), train)}
        train_rows.update({row: (pattern, train) for row, pattern in mcof_train_rows.items()})
        mask_stages = {**train_rows, **mask_stages}
    all_mask_stages = {**mask_stages, **{row: (pattern, train) for row, pattern in selftrain_rows.items()},
                       **{row: (artifact(row), evaluation) for row in segmenter_ablation_runs}}
    cam_rows = {"cam": "cam", **sccam_rows, **eps_rows}
    all_cam_rows = {**cam_rows, **sccam_ablation_rows, **eps_ablation_rows}
    folder_rows = {"segmenter_masks": (mask_folder, train)} if mask_folder and train_masks else {}
    # the papers' protocol: thresholds chosen on the training split's pseudo masks; the sweep
    # replaces a constant background score, which PSA's walked background is not
    score_stages = set(rw_rows) if cfg["random_walk"]["normalisation"] != "psa" else set()
    threshold_rows = set(all_cam_rows) | score_stages if train_masks and train != evaluation else set()
    train_scored_rows = (score_stages | set(segmenter_ablation_runs)) if train_masks and train != evaluation else set()
    # segmenters predict without labels; everything else on a split keeps to the image's classes
    # (MCOF's PixelNet too, on its training images)
    without_labels = {*segmenters, *(f"{s}_crf" for s in segmenters), "mcof", *segmenter_ablation_runs}
    image_labels = {row: row not in without_labels
                    for row in [*all_cam_rows, *all_mask_stages, *folder_rows]}
    if mcof_rounds and train == evaluation:  # then row mcof is PixelNet's training-split prediction
        image_labels["mcof"] = True
    if mask_folder:
        image_labels["segmenter_masks"] = False  # made elsewhere: unknown, counted as not
    if prm_rows and prm["classes"] == "predicted":  # PRM's own inference: classes from its scores
        image_labels["prm"] = False
    artifact_stages = {"segmenter_masks": seg_source}
    if mcof_rounds:
        artifact_stages["mcof"] = pixelnet(mcof_rounds[-1])

    report_stages = {
        row: {"kind": "cam", "split": evaluation, "pattern": artifact(cam_dir), "stage": "cam"}
        for row, cam_dir in cam_rows.items()
    }
    report_stages.update(
        {
            row: {"kind": "mask", "split": split, "pattern": pattern, "stage": artifact_stages.get(row, row)}
            for row, (pattern, split) in mask_stages.items()
        }
    )
    histories = {
        ("classifier" if row == "cam" else row): cam_models[cam_dir].removesuffix("model.pt") + "history.json"
        for row, cam_dir in cam_rows.items()
    }
    histories.update({name: f"results/{name}/history.json" for name in affinity_runs})
    histories.update({name: f"results/segmenter/{name}/history.json" for name in segmenters})
    histories.update({pixelnet(r): f"results/segmenter/{pixelnet(r)}/history.json" for r in mcof_rounds})
    histories.update({f"mcof_regionnet_r{r}": f"{mcof_dir(r)}/regionnet_history.json" for r in mcof_rounds})
    if prm_rows:
        histories["prm"] = "results/prm/history.json"

    return Plan(
        train_split=train,
        eval_split=evaluation,
        saliency_source=source,
        saliency_rows=saliency_rows,
        cam_models=cam_models,
        cam_reports=cam_reports,
        sccam_rounds=sccam_rounds,
        sccam_rows=sccam_rows,
        sccam_ablation_rows=sccam_ablation_rows,
        sccam_ablation_runs=sccam_ablation_runs,
        eps_rows=eps_rows,
        eps_ablation_rows=eps_ablation_rows,
        eps_ablation_runs=eps_ablation_runs,
        mcof_rounds=mcof_rounds,
        mcof_train_rows=mcof_train_rows,
        selftrain_rows=selftrain_rows,
        round_segmenters=round_segmenters,
        mask_sources=mask_sources,
        rw_rows=rw_rows,
        affinity_runs=affinity_runs,
        affinity_label_settings=affinity_label_settings,
        rw_affinity=rw_affinity,
        mask_folder=mask_folder,
        seg_source=seg_source,
        segmenters=segmenters,
        segmenter_runs=segmenter_runs,
        segmenter_ablation_runs=segmenter_ablation_runs,
        agreement_sources=agreement_sources,
        default_agreement=default_agreement,
        crf_sources=crf_sources,
        prm_rows=prm_rows,
        prm_instance_metrics=prm_instance_metrics,
        mask_stages=mask_stages,
        all_mask_stages=all_mask_stages,
        cam_rows=cam_rows,
        all_cam_rows=all_cam_rows,
        folder_rows=folder_rows,
        evaluated_stages=[*cam_rows, *mask_stages, *folder_rows],
        image_labels=image_labels,
        artifact_stages=artifact_stages,
        score_stages=score_stages,
        threshold_rows=threshold_rows,
        train_scored_rows=train_scored_rows,
        report_stages=report_stages,
        histories=histories,
        segment_predict={"scales": seg["test_scales"], "flip": seg["test_flip"]},
    )


def walk_settings(walk_cfg: dict) -> dict:
    """What defines a random walk's masks: the settings of its normalisation mode only (the CRF
    profile is rw_crf's; alpha is PSA's, bg_threshold the other modes'), so that changing one
    reruns only the walks it changes."""
    unused = {"crf_profile", "bg_threshold" if walk_cfg["normalisation"] == "psa" else "alpha"}
    return {k: v for k, v in walk_cfg.items() if k not in unused}


def saliency_settings(saliency_cfg: dict, source: str) -> dict:
    """What defines a saliency source's maps (its batch_size only says how it runs; the job
    reads that from the config, so changing it reruns nothing)."""
    settings = {k: v for k, v in saliency_cfg[source].items() if k != "batch_size"}
    return {"source": source, source: settings}
