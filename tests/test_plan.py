"""The plan of the workflow (pipeline/plan.py): rows, models and mask sources from a config,
checked without Snakemake; and that the order of the rule files' includes does not matter."""
import re
import subprocess
import sys

import pytest
import yaml

from pipeline import plan
from pipeline.config import DEFAULT_CONFIG, layered, resolve, scale_warning
from pipeline.manifest import GROUND_TRUTH

from conftest import REPO, SNAKEMAKE, TINY, deep_update


def default_cfg(extra=None, configfile=DEFAULT_CONFIG) -> dict:
    cfg, _ = layered([configfile], {})
    cfg = deep_update(cfg, extra or {})
    if cfg["saliency"]["source"] == "auto":
        cfg["saliency"]["source"] = "manifold_ranking"
    return cfg


def build(extra=None, masks=True, instances=True, configfile=DEFAULT_CONFIG):
    return plan.build(default_cfg(extra, configfile), has_masks=lambda split: masks, eval_has_instances=instances)


def test_the_default_config_plans_every_row_of_the_results_table():
    p = build()
    assert p.evaluated_stages == [
        "cam", "eps", "affinity_labels", "mcof_seeds", "mcof_regionnet_r1", "mcof_saliency", "mcof_pixelnet_r1",
        "rw", "eps_rw", "rw_crf", "segmenter_masks", "deeplab_aspp", "deeplab_aspp_crf", "fully_supervised",
        "mcof", "prm",
    ]
    assert p.mask_stages["rw"] == ("results/rw/{split}/{shard}.h5", "val")
    assert p.mask_stages["segmenter_masks"] == ("results/rw/{split}/{shard}.h5", "train")
    assert p.mask_stages["mcof_pixelnet_r1"][1] == "train" and p.mask_stages["mcof"][1] == "val"
    assert p.artifact_stages == {"segmenter_masks": "rw", "mcof": "mcof_pixelnet_r1"}
    assert p.rw_rows == {"rw": "cam", "eps_rw": "eps/manifold_ranking/tau0.4/cam"}  # eps.tau 0.4
    assert p.cam_models["cam"] == "results/classifier/model.pt"
    assert p.cam_models["eps/manifold_ranking/tau0.4/cam"] == "results/eps/manifold_ranking/tau0.4/model.pt"
    assert p.segmenters == {"deeplab_aspp": ("aspp", "rw"), "fully_supervised": ("aspp", GROUND_TRUTH)}
    assert set(p.crf_sources) == {"rw", "deeplab_aspp", "fully_supervised"}
    assert p.prm_instance_metrics == ["results/metrics/prm_instances.json"]
    # every evaluated row has a montage; every montage row's pattern names its split's shards
    assert set(p.report_stages) == set(p.cam_rows) | set(p.mask_stages)
    assert p.histories["classifier"] == "results/classifier/history.json"
    assert p.histories["eps"] == "results/eps/manifold_ranking/tau0.4/history.json"
    # like with like: which rows use the ground-truth image labels at inference
    assert set(p.image_labels) >= set(p.evaluated_stages)
    assert {r for r in p.evaluated_stages if not p.image_labels[r]} == {
        "deeplab_aspp", "deeplab_aspp_crf", "fully_supervised", "mcof"}
    # thresholds chosen on the training split: every CAM row and every walk
    assert p.threshold_rows == set(p.all_cam_rows) | {"rw", "eps_rw"}
    assert p.chosen_on("eps_rw") == ["results/metrics/train_split/eps_rw.json"] and p.chosen_on("rw_crf") == []


def test_the_scratch_config_plans_the_same_rows_from_scratch():
    """config/scratch.yaml (the previous default) differs from the ImageNet default in its
    recipe, not in its rows."""
    cfg, chain = layered([REPO / "config/scratch.yaml"], {})
    assert chain[0] == DEFAULT_CONFIG and scale_warning(cfg, chain) is None
    default, _ = layered([DEFAULT_CONFIG], {})
    assert default["classifier"]["backbone"]["name"] == "mobilenet_v2"
    assert default["segmenter"]["backbone"]["weights"] == "imagenet"
    assert cfg["classifier"]["backbone"] == {**default["classifier"]["backbone"], "name": "resnet18",
                                             "weights": "none", "frozen_stages": 0}
    assert cfg["dataset"]["synthetic"]["n_images"] == {"train": 800, "val": 200}
    assert build(configfile=REPO / "config/scratch.yaml").evaluated_stages == build().evaluated_stages


def test_each_walk_uses_the_affinity_net_of_its_own_cams_where_asked():
    """EPS walks over an AffinityNet trained on its own CAMs (eps.own_affinity, default), SC-CAM
    over the plain CAMs' one unless sccam.own_affinity; each network has its labels and history."""
    p = build({"sccam": {"enabled": True, "k": 3, "rounds": 2}})
    assert p.affinity_runs == {"affinity": "cam", "eps_affinity": "eps/manifold_ranking/tau0.4/cam"}
    assert p.rw_affinity == {"rw": "affinity", "sccam_rw": "affinity", "eps_rw": "eps_affinity"}
    assert plan.affinity_net("eps_affinity") == "results/eps_affinity/model.pt"
    assert plan.affinity_labels("affinity") == "affinity_labels"  # the row of the plain CAMs' labels
    assert p.histories["eps_affinity"] == "results/eps_affinity/history.json"
    p = build({"sccam": {"enabled": True, "k": 3, "rounds": 2, "own_affinity": True}, "eps": {"own_affinity": False}})
    assert p.affinity_runs == {"affinity": "cam", "sccam_affinity": "sccam/k3/r2/cam"}
    assert p.rw_affinity == {"rw": "affinity", "sccam_rw": "sccam_affinity", "eps_rw": "affinity"}


def test_a_methods_own_affinity_labels_take_its_own_scores_and_leave_the_plain_cams_alone():
    """eps.affinity_labels / sccam.affinity_labels override IRN's scores for that method's own
    labels only; null keeps affinity_labels' value."""
    p = build({"affinity_labels": {"mode": "irn", "fg_threshold": 0.7, "bg_threshold": 0.4},
               "eps": {"affinity_labels": {"fg_threshold": 0.85, "bg_threshold": 0.55}},
               "sccam": {"enabled": True, "own_affinity": True, "affinity_labels": {"bg_threshold": 0.3}}})
    s = p.affinity_label_settings
    assert set(s) == set(p.affinity_runs) == {"affinity", "eps_affinity", "sccam_affinity"}
    assert (s["affinity"]["fg_threshold"], s["affinity"]["bg_threshold"]) == (0.7, 0.4)
    assert (s["eps_affinity"]["fg_threshold"], s["eps_affinity"]["bg_threshold"]) == (0.85, 0.55)
    assert (s["sccam_affinity"]["fg_threshold"], s["sccam_affinity"]["bg_threshold"]) == (0.7, 0.3)
    assert s["eps_affinity"]["mode"] == "irn"
    # null (the schema's default) leaves every AffinityNet on the same labels' settings
    unset = {"affinity_labels": {"fg_threshold": None, "bg_threshold": None}}
    p = build({"sccam": {"enabled": True, "own_affinity": True, **unset}, "eps": unset})
    assert all(v == p.affinity_label_settings["affinity"] for v in p.affinity_label_settings.values())


@pytest.mark.parametrize("source", ["rw", "rw_crf", "sccam_rw", "eps_rw"])
def test_every_segmenter_source_the_schema_allows_has_a_producer(source):
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    enum = schema["properties"]["segmenter"]["properties"]["source"]["oneOf"][0]["enum"]
    assert source in enum and len(enum) == 4
    p = build({"sccam": {"enabled": True}, "eps": {"enabled": True}, "segmenter": {"source": source}})
    assert p.seg_source == source and p.mask_sources[source] == f"results/{source}/{{split}}/{{shard}}.h5"
    assert p.mask_stages["segmenter_masks"][0] == p.mask_sources[source]
    # a source that needs a method switched off is refused, naming the setting
    if source in ("sccam_rw", "eps_rw"):
        method = source.removesuffix("_rw")
        with pytest.raises(ValueError, match=rf"segmenter.source: {source} is not made.*{method}.enabled"):
            build({method: {"enabled": False}, "segmenter": {"source": source}})


def test_names_built_here_match_the_directories_and_rows():
    p = build({"sccam": {"enabled": True, "k": 3, "rounds": 2, "ablation_k": [0, 1, 3]},
               "eps": {"tau": 0.4, "ablation_tau": [0.3, 0.5]}, "saliency": {"ablation_sources": ["frequency_tuned"]}})
    assert p.sccam_rows == {"sccam_r1": "sccam/k3/r1/cam", "sccam_r2": "sccam/k3/r2/cam"}
    assert p.sccam_ablation_rows == {"sccam_k0_r1": "sccam/k0/r1/cam", "sccam_k0_r2": "sccam/k0/r2/cam",
                                     "sccam_k1_r1": "sccam/k1/r1/cam", "sccam_k1_r2": "sccam/k1/r2/cam",
                                     "sccam_k3_r1": "sccam/k3/r1/cam", "sccam_k3_r2": "sccam/k3/r2/cam"}
    assert p.cam_models["sccam/k0/r2/cam"] == "results/sccam/k0/r2/model.pt"
    assert p.cam_models["sccam/k1/r2/cam"] == "results/sccam/k1/r2/model.pt"
    assert p.cam_reports["sccam/k3/r1/cam"] == "results/sccam/k3/r1/clusters.json"
    assert p.previous_classifier(3, 1) == "results/classifier/model.pt"
    assert p.previous_classifier("0", "2") == "results/sccam/k0/r1/model.pt"
    assert p.previous_classifier("3", "2") == "results/sccam/k3/r1/model.pt"
    assert p.rw_rows["sccam_rw"] == "sccam/k3/r2/cam"
    assert p.eps_ablation_runs == {"eps_manifold_ranking_tau0.3": ("manifold_ranking", 0.3),
                                   "eps_manifold_ranking_tau0.5": ("manifold_ranking", 0.5),
                                   "eps_frequency_tuned_tau0.4": ("frequency_tuned", 0.4)}
    assert p.eps_ablation_rows["eps_frequency_tuned_tau0.4"] == "eps/frequency_tuned/tau0.4/cam"
    assert p.saliency_rows == {"saliency": "manifold_ranking", "saliency_frequency_tuned": "frequency_tuned"}


def test_eps_tau_is_chosen_on_the_training_splits_metrics_even_when_that_split_is_the_evaluated_one():
    cfg = {"eps": {"ablation_tau": [0.3, 0.4]}}
    row = "eps_manifold_ranking_tau0.4"
    assert build(cfg).train_metrics(row) == [f"results/metrics/train_split/{row}.json"]
    same = plan.build(default_cfg({**cfg, "dataset": {"eval_split": "train"}}), lambda s: True, True)
    assert row in same.eps_ablation_runs and same.train_metrics(row) == [f"results/metrics/{row}.json"]
    assert build(cfg, masks=False).train_metrics(row) == []


def test_mcof_rounds_chain_regionnet_pixelnet_and_the_self_training_control():
    p = build({"mcof": {"rounds": 2}})
    assert list(p.mcof_train_rows) == ["mcof_seeds", "mcof_regionnet_r1", "mcof_saliency", "mcof_pixelnet_r1",
                                       "mcof_regionnet_r2", "mcof_pixelnet_r2"]
    assert p.regionnet_labels(1) == ("results/mcof_seeds/{split}/{shard}.h5", "mcof_seeds")
    assert p.regionnet_labels("2") == ("results/mcof_pixelnet_r1/{split}/{shard}.h5", "mcof_pixelnet_r1")
    assert p.round_segmenters["mcof_pixelnet_r1"]["source"] == "mcof_saliency"
    assert p.round_segmenters["mcof_pixelnet_r2"]["source"] == "mcof_regionnet_r2"
    # the paper's control starts from round 1's segmentation result: round 2 retrains on PixelNet 1's predictions
    assert "selftrain_r1" not in p.round_segmenters
    assert p.round_segmenters["selftrain_r2"]["source"] == "mcof_pixelnet_r1"
    assert p.mask_sources["mcof_pixelnet_r1"] == "results/mcof_pixelnet_r1/{split}/{shard}.h5"
    assert build({"mcof": {"rounds": 1}}).selftrain_rows == {}
    assert p.mask_stages["mcof"] == ("results/mcof_pixelnet_r2/{split}/{shard}.h5", "val")
    assert set(p.selftrain_rows) <= set(p.all_mask_stages) and not set(p.selftrain_rows) & set(p.mask_stages)
    # a round segmenter predicts the training split with its own settings, the evaluation split with the test ones
    pixelnet = default_cfg()["mcof"]["pixelnet"]
    assert p.segment_settings("mcof_pixelnet_r1", "train") == {"scales": pixelnet["predict_scales"],
                                                                 "flip": pixelnet["predict_flip"],
                                                                 "restrict_to_labels": True}
    assert p.segment_settings("mcof_pixelnet_r1", "val") == p.segment_settings("deeplab_aspp", "val")
    no_saliency = build({"mcof": {"saliency": {"enabled": False}}})
    assert "mcof_saliency" not in no_saliency.mcof_train_rows
    assert no_saliency.round_segmenters["mcof_pixelnet_r1"]["source"] == "mcof_regionnet_r1"


def test_without_ground_truth_only_what_needs_none_is_planned():
    p = build(masks=False, instances=False)
    assert "fully_supervised" not in p.segmenters and "segmenter_masks" not in p.mask_stages
    assert "affinity_labels" not in p.mask_stages and "mcof_seeds" not in p.mask_stages
    assert p.prm_instance_metrics == []
    assert p.threshold_rows == set() and p.chosen_on("cam") == []  # nothing to choose on: val's own best
    psa = build({"random_walk": {"normalisation": "psa"}})
    assert psa.score_stages == set() and "rw" not in psa.threshold_rows  # no constant background to sweep
    folder = build({"segmenter": {"source": {"folder": "/data/masks"}}})
    assert folder.seg_source == plan.FOLDER and folder.mask_folder == "/data/masks"
    assert folder.folder_rows == {"segmenter_masks": ("/data/masks", "train")}
    assert "segmenter_masks" not in folder.mask_stages and folder.segmenters["deeplab_aspp"] == ("aspp", "folder")


def test_settings_the_schema_cannot_check_stop_the_plan():
    with pytest.raises(ValueError, match="mcof.seeds.threshold"):
        build({"mcof": {"seeds": {"threshold": 0.1, "bg_threshold": 0.2}}})
    with pytest.raises(ValueError, match="saliency.folder.dir is not set"):
        build({"saliency": {"source": "folder"}})
    with pytest.raises(ValueError, match="eps.affinity_labels sets IRN's scores"):
        build({"affinity_labels": {"mode": "psa"}, "eps": {"affinity_labels": {"fg_threshold": 0.8}}})
    sccam_own = {"enabled": True, "own_affinity": True, "affinity_labels": {"bg_threshold": 0.5}}
    with pytest.raises(ValueError, match=r"sccam.affinity_labels: fg_threshold \(0.3\) is below"):
        build({"affinity_labels": {"mode": "irn", "fg_threshold": 0.3, "bg_threshold": 0.2}, "sccam": sccam_own})
    with pytest.raises(ValueError, match=r"affinity_labels.fg_threshold \(0.1\) is below"):
        build({"affinity_labels": {"mode": "irn", "fg_threshold": 0.1, "bg_threshold": 0.2}})
    with pytest.raises(ValueError, match="affinity.feature_cache needs affinity.freeze_backbone"):
        build({"affinity": {"feature_cache": True}})
    # scores a method does not use (no AffinityNet of its own, or switched off) stop nothing
    build({"affinity_labels": {"mode": "psa"}, "eps": {"own_affinity": False}})
    build({"affinity_labels": {"mode": "irn", "fg_threshold": 0.3, "bg_threshold": 0.2},
           "sccam": {**sccam_own, "own_affinity": False}})


def test_the_plan_imports_neither_snakemake_nor_torch():
    code = ("import sys, pipeline.plan; bad = [m for m in ('torch', 'snakemake') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_schema_defaults_alone_make_a_plan():
    cfg = resolve({})
    cfg["saliency"]["source"] = "u2netp"
    p = plan.build(cfg, has_masks=lambda split: True, eval_has_instances=False)
    assert p.train_split == cfg["dataset"]["train_split"] and p.eval_split == cfg["dataset"]["eval_split"]
    assert "rw" in p.rw_rows and p.segment_predict["scales"] == cfg["segmenter"]["test_scales"]


def canonical_dag(dot: str) -> list[str]:
    """The jobs (rule and wildcards) and their edges of `snakemake --dag`, without its numbering."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "(.*?)", color', dot, re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)
    return sorted(labels.values()) + sorted(f"{labels[a]} -> {labels[b]}" for a, b in edges)


@pytest.mark.slow
def test_the_order_of_the_includes_does_not_matter(tmp_path):
    text = (REPO / "workflow/Snakefile").read_text()
    includes = re.findall(r'^include: "rules/(\w+)\.smk"\n', text, re.M)
    assert len(includes) >= 15 and includes[0] == "common"
    # common.smk first (it builds the plan); every other rule file in reverse order
    shuffled = [includes[0], *reversed(includes[1:])]
    body = re.sub(r'^include: "rules/\w+\.smk"\n', "", text, flags=re.M)
    body = body.replace('report: "report/workflow.rst"', f'report: "{REPO}/workflow/report/workflow.rst"')
    head = "".join(f'include: "{REPO}/workflow/rules/{name}.smk"\n' for name in shuffled)
    (tmp_path / "Snakefile").write_text(head + body)

    def dag(snakefile):
        proc = subprocess.run([str(SNAKEMAKE), "--snakefile", str(snakefile), "-n", "--dag", "dot", "all",
                               "sccam_ablation", "eps_ablation", "mcof_ablation"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return canonical_dag(proc.stdout)

    normal, reordered = dag(REPO / "Snakefile"), dag(tmp_path / "Snakefile")
    assert len(normal) > 500 and reordered == normal


def test_the_smoke_config_is_the_tests_tiny_config_on_the_embedded_default(tmp_path):
    path = REPO / ".test/config/config.yaml"
    smoke = yaml.safe_load(path.read_text())
    assert smoke.pop("extends") == "config/config.yaml" and smoke == TINY
    cfg, chain = layered([path], {})
    assert DEFAULT_CONFIG.resolve() in [c.resolve() for c in chain]
    assert scale_warning(cfg, chain) is None
    assert cfg["classifier"]["epochs"] == 1 and cfg["dataset"]["synthetic"]["n_images"] == {"train": 24, "val": 16}
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--directory", str(tmp_path), "--configfile", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and re.search(r"^total\s+\d+", proc.stdout, re.M), proc.stdout[-3000:]


def test_prm_with_predicted_classes_counts_as_a_row_without_labels():
    assert build().image_labels["prm"] is True
    assert build({"prm": {"classes": "predicted"}}).image_labels["prm"] is False


def test_segmenter_ablation_trains_the_first_head_at_each_rate_scored_on_the_training_split_too():
    p = build({"segmenter": {"heads": ["largefov", "aspp"], "lr": 0.01, "ablation_lr": [0.001, 0.01]}})
    assert p.segmenter_ablation_runs == {"deeplab_largefov_lr0.001": 0.001, "deeplab_largefov_lr0.01": 0.01}
    settings, source = p.segmenter_runs["deeplab_largefov_lr0.001"]
    main, _ = p.segmenter_runs["deeplab_largefov"]
    assert source == "rw" and settings == {**main, "lr": 0.001}  # only the rate differs
    assert "ablation_lr" not in main  # a new list of rates retrains no main segmenter
    assert p.all_mask_stages["deeplab_largefov_lr0.01"] == ("results/deeplab_largefov_lr0.01/{split}/{shard}.h5", "val")
    assert "deeplab_largefov_lr0.01" not in p.evaluated_stages  # an ablation row, not the results table's
    assert p.image_labels["deeplab_largefov_lr0.01"] is False
    assert p.train_metrics("deeplab_largefov_lr0.01") == ["results/metrics/train_split/deeplab_largefov_lr0.01.json"]
    assert "deeplab_largefov_lr0.01" in p.train_scored_rows and "rw" in p.train_scored_rows
    # the training split evaluated itself: its own metrics; without its ground truth: none
    same = plan.build(default_cfg({"dataset": {"eval_split": "train"}}), lambda s: True, True)
    assert same.train_metrics("deeplab_aspp_lr0.001") == ["results/metrics/deeplab_aspp_lr0.001.json"]
    assert build(masks=False).train_metrics("deeplab_aspp_lr0.001") == []


def test_agreement_pairs_each_segmenter_with_the_pseudo_masks_it_learns_from():
    p = build({"segmenter": {"ablation_lr": [0.001]}, "mcof": {"rounds": 2}})
    assert p.agreement_sources == {"deeplab_aspp": "rw", "deeplab_aspp_lr0.001": "rw",
                                   "mcof_pixelnet_r1": "mcof_saliency", "mcof_pixelnet_r2": "mcof_regionnet_r2",
                                   "selftrain_r2": "mcof_pixelnet_r1"}
    assert "fully_supervised" in p.segmenters  # learns from the ground truth: nothing to agree with
    # by default: the main segmenter and MCOF's PixelNets, not the ablation row or the control
    assert p.default_agreement == ["deeplab_aspp", "mcof_pixelnet_r1", "mcof_pixelnet_r2"]
    folder = build({"segmenter": {"source": {"folder": "/masks"}}, "mcof": {"enabled": False}})
    assert folder.agreement_sources == {} and folder.default_agreement == []  # masks made elsewhere


def test_segmenter_ablation_target_plans_a_training_per_rate_and_both_splits(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(deep_update(TINY, {"segmenter": {"ablation_lr": [0.001, 0.01]}})))
    proc = subprocess.run([str(SNAKEMAKE), "segmenter_ablation", "--snakefile", str(REPO / "Snakefile"), "-n",
                           "--directory", str(tmp_path), "--configfile", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout.split("Job stats:", 1)[1], flags=re.M))
    # two rates, each trained once and predicted on both splits (one shard each), scored on both
    assert {k: int(jobs[k]) for k in ("train_segmenter", "segment", "evaluate_masks", "evaluate_masks_on_train",
                                      "evaluate_agreement", "segmenter_ablation")} == {
        "train_segmenter": 2, "segment": 4, "evaluate_masks": 2, "evaluate_masks_on_train": 2,
        "evaluate_agreement": 2, "segmenter_ablation": 1}


def test_sccam_control_is_the_same_rounds_without_the_sub_category_loss():
    # k 0: one cluster per class, weighted 0; every other k: its clusters at the configured weight
    assert plan.sccam_round_settings("0", {"sub_weight": 5}) == (1, 0.0)
    assert plan.sccam_round_settings(0, {"sub_weight": 5}) == (1, 0.0)
    assert plan.sccam_round_settings("10", {"sub_weight": 5}) == (10, 5)
    assert plan.sccam_round_settings(1, {"sub_weight": 2.5}) == (1, 2.5)


def test_sccam_rounds_learn_at_the_classifier_rate_over_one_plus_the_sub_weight():
    assert plan.sccam_lr({"lr": None, "sub_weight": 5}, {"lr": 0.012}) == pytest.approx(0.002)
    assert plan.sccam_lr({"lr": 0.01, "sub_weight": 5}, {"lr": 0.012}) == 0.01  # set: as given
