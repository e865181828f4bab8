"""Runs under several seeds: each row's mean and spread, the papers' claims judged on them, and
the seed directories' configurations (pipeline/claims.py, pipeline/seeds.py)."""
from __future__ import annotations

import json
import statistics

import pytest
import yaml

from conftest import TINY, write_config
from pipeline.__main__ import main
from pipeline.claims import CLAIMS, PRM_INSTANCES, Claim, judge, row_values, spread_rows
from pipeline.seeds import absolute_paths, read_runs, run_seeds, seed_config


def _metrics(stage, miou, **extra):
    return {"stage": stage, "split": "val", "miou": miou, "per_class_iou": {}, **extra}


def _write_run(results, rows: dict):
    (results / "metrics").mkdir(parents=True)
    for name, m in rows.items():
        (results / "metrics" / f"{name}.json").write_text(json.dumps(m))


def test_row_values_score_whole_images_and_keep_prm_instances():
    partial = _metrics("affinity_labels", 0.7, miou_full=0.5, coverage=0.6, per_class_iou_full={})
    assert row_values(partial) == {"miou": 0.5, "miou_decided": 0.7}
    assert row_values(_metrics("cam", 0.4, coverage=None)) == {"miou": 0.4, "miou_decided": None}
    inst = {"stage": "prm_instances", "map_r": 0.12, "same_class_pairs": {"two_or_more_matched": 0.25}}
    assert row_values(inst) == {"map_r": 0.12, "two_or_more_matched": 0.25}
    assert row_values({"stage": "saliency", "max_f": 0.8}) == {}


def test_spread_is_mean_and_sample_sd_over_the_seeds_that_have_the_row():
    runs = {0: {"cam": {"miou": 0.40}, "rw": {"miou": 0.50}},
            1: {"cam": {"miou": 0.44}, "rw": {"miou": 0.46}},
            2: {"cam": {"miou": 0.42}}}
    rows = {r["row"]: r for r in spread_rows(runs)}
    assert rows["cam"]["n_seeds"] == 3
    assert rows["cam"]["mean"] == pytest.approx(0.42)
    assert rows["cam"]["sd"] == pytest.approx(statistics.stdev([0.40, 0.44, 0.42]))
    assert (rows["cam"]["min"], rows["cam"]["max"]) == (0.40, 0.44)
    assert rows["rw"]["n_seeds"] == 2 and rows["rw"]["per_seed"] == {0: 0.50, 1: 0.46}
    one = spread_rows({0: {"cam": {"miou": 0.4}}})[0]
    assert one["sd"] is None and one["mean"] == 0.4


def test_claims_hold_on_the_mean_and_count_the_seeds_that_met_them():
    walk = next(c for c in CLAIMS if c.row == "rw" and c.minus == "cam")
    # +6, +7 and +1 points: the mean (+4.7) misses the 5 points although two seeds met them
    runs = {s: {"cam": {"miou": 0.40}, "rw": {"miou": 0.40 + d}} for s, d in enumerate([0.06, 0.07, 0.01])}
    (verdict,) = judge(runs, [walk])
    assert verdict["mean"] == pytest.approx(0.04667, abs=1e-4)
    assert verdict["seeds_met"] == 2 and verdict["verdict"] == "does not hold on the mean (2 of 3 seeds met it)"
    runs[2]["rw"]["miou"] = 0.46
    (verdict,) = judge(runs, [walk])
    assert verdict["verdict"] == "holds" and verdict["seeds_met"] == 3
    # one lucky seed (+30) carries the mean (+10.3) over 5 points that the other two miss
    runs = {s: {"cam": {"miou": 0.40}, "rw": {"miou": 0.40 + d}} for s, d in enumerate([0.30, 0.0, 0.01])}
    (verdict,) = judge(runs, [walk])
    assert verdict["seeds_met"] == 1 and verdict["verdict"] == "holds on the mean only (1 of 3 seeds met it)"
    runs[1]["rw"]["miou"], runs[2]["rw"]["miou"] = 0.30, 0.31  # none met: plainly does not hold
    assert judge(runs, [walk])[0]["verdict"] == "does not hold"
    # at or above: exactly 5 points meets the claim
    (verdict,) = judge({0: {"cam": {"miou": 0.25}, "rw": {"miou": 0.75}}},
                       [Claim("x", "y", "z", "rw", "cam", at_least=0.5, strict=False)])
    assert verdict["seeds_met"] == 1 and verdict["verdict"].startswith("holds (1 seed: too few")


def test_claims_without_their_rows_are_not_run_and_single_values_are_judged_alone():
    prm = [c for c in CLAIMS if c.row == PRM_INSTANCES]
    runs = {s: {PRM_INSTANCES: {"map_r": v, "two_or_more_matched": None}} for s, v in enumerate([0.10, 0.2, 0.21])}
    judged = judge(runs, prm)
    assert judged[0]["mean"] == pytest.approx(0.17) and judged[0]["verdict"] == "holds"
    assert judged[1]["verdict"] == "not run" and judged[1]["n_seeds"] == 0
    assert {c["verdict"] for c in judge({0: {}})} == {"not run"}


def test_seed_config_makes_existing_relative_paths_absolute_and_sets_the_seed(tmp_path):
    (tmp_path / "data" / "VOC2012").mkdir(parents=True)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"extends": "config/config.yaml", "seed": 9,
                                   "dataset": {"voc": {"root": "data/VOC2012"}},
                                   "saliency": {"source": "manifold_ranking"}}))
    out = seed_config([cfg], 3, tmp_path)
    assert out["seed"] == 3
    assert out["dataset"]["voc"]["root"] == str((tmp_path / "data" / "VOC2012").resolve())
    assert out["saliency"]["source"] == "manifold_ranking"  # not a path here
    assert out["dataset"]["name"] == "synthetic"  # from the file it extends
    assert absolute_paths(["data", "nothing", 4], tmp_path) == [str((tmp_path / "data").resolve()), "nothing", 4]


def test_seeds_command_writes_the_spread_and_the_claims_of_finished_runs(tmp_path, capsys):
    out = tmp_path / "seeds"
    for seed, (cam, rw) in {0: (0.40, 0.47), 1: (0.42, 0.49), 5: (0.44, 0.51)}.items():
        _write_run(out / f"seed{seed}" / "results", {"cam": _metrics("cam", cam), "rw": _metrics("rw", rw)})
    assert main(["seeds", "--seeds", "0", "1", "5", "--out", str(out), "--no-run"]) == 0
    printed = capsys.readouterr().out
    assert "42.0 +- 2.0" in printed  # cam over the three seeds
    spread = [line.split("\t") for line in (out / "spread.tsv").read_text().splitlines()]
    assert spread[0] == ["row", "n_seeds", "mean", "sd", "min", "max", "seed0", "seed1", "seed5"]
    assert spread[1] == ["cam", "3", "0.4200", "0.0200", "0.4000", "0.4400", "0.4000", "0.4200", "0.4400"]
    claims = {line.split("\t")[1]: line.split("\t") for line in (out / "claims.tsv").read_text().splitlines()[1:]}
    walk = claims["rw at least 5 points above cam"]
    assert walk[3:8] == ["3", "0.0700", "0.0000", "3", "holds"]
    assert claims["eps above cam"][7] == "not run"


def test_seeds_command_names_a_seed_without_results(tmp_path, capsys):
    assert main(["seeds", "--seeds", "0", "--out", str(tmp_path), "--no-run"]) == 1
    assert f"{tmp_path}/seed0/results/metrics: no metric files" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot read the metrics"):
        (tmp_path / "bad" / "metrics").mkdir(parents=True)
        (tmp_path / "bad" / "metrics" / "cam.json").write_text("{")
        read_runs({0: tmp_path / "bad"})


def test_each_seed_plans_its_own_run_in_its_own_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "tiny.yaml", {"prm": {"enabled": False}})
    run_seeds([0, 1], [config], cores=1, out=tmp_path / "seeds", extra=["-n", "--quiet", "rules"])
    for seed in (0, 1):
        written = yaml.safe_load((tmp_path / "seeds" / f"seed{seed}" / "config.yaml").read_text())
        assert written["seed"] == seed and written["classifier"] == TINY["classifier"]
        log = (tmp_path / "seeds" / f"seed{seed}" / "snakemake.log").read_text()
        assert "train_classifier" in log, log[-2000:]
    before = (tmp_path / "seeds" / "seed0" / "config.yaml").stat().st_mtime_ns
    run_seeds([0], [config], cores=1, out=tmp_path / "seeds", extra=["-n"])
    assert (tmp_path / "seeds" / "seed0" / "config.yaml").stat().st_mtime_ns == before  # nothing to rerun
    with pytest.raises(ChildProcessError, match="seed 2: snakemake failed"):
        run_seeds([2], [config], cores=1, out=tmp_path / "seeds", extra=["--config", "classifier={epochs: -1}"])


def test_seeds_command_passes_what_follows_the_double_dash_to_each_run(tmp_path, monkeypatch):
    import pipeline.seeds

    calls = []
    monkeypatch.setattr(pipeline.seeds, "run_seeds", lambda *a: calls.append(a))
    _write_run(tmp_path / "seed4" / "results", {"cam": _metrics("cam", 0.4)})
    assert main(["seeds", "--seeds", "4", "--configfile", "a.yaml", "--cores", "3", "--out", str(tmp_path),
                 "--parallel", "--", "--profile", "p", "eps_ablation"]) == 0
    assert calls == [([4], ["a.yaml"], "3", tmp_path, True, ["--profile", "p", "eps_ablation"])]


def test_a_new_seed_starts_from_a_copy_of_the_previous_run_and_its_records(tmp_path):
    from pipeline.seeds import share_finished_run

    source, target = tmp_path / "seed0", tmp_path / "seed1"
    (source / "results/superpixels").mkdir(parents=True)
    (source / "results/checkpoints").mkdir()
    (source / "results/superpixels/shard00.h5").write_bytes(b"regions")
    (source / "results/checkpoints/classifier.pt").write_bytes(b"state")
    (source / "results/benchmarks/superpixels").mkdir(parents=True)
    (source / "results/benchmarks/superpixels/shard00.tsv").write_text("s\n108.0\n")
    (source / "results/superpixels/.shard01.h5.tmp999999999").write_bytes(b"half")  # a killed writer's
    for name in ("metadata", "incomplete"):
        (source / ".snakemake" / name).mkdir(parents=True)
        (source / ".snakemake" / name / "cmVzdWx0cw==").write_text(name)
    (target / ".snakemake/metadata").mkdir(parents=True)
    (target / ".snakemake/metadata/stale").write_text("a record of an output that is not there")
    (target / ".sharing.tmp/results").mkdir(parents=True)  # a copy cut short

    assert share_finished_run(source, target)
    copied = target / "results/superpixels/shard00.h5"
    assert copied.read_bytes() == b"regions"
    assert copied.stat().st_mtime_ns == (source / "results/superpixels/shard00.h5").stat().st_mtime_ns
    assert not (target / "results/checkpoints").exists()  # training starts over under its own seed
    assert not (target / "results/benchmarks").exists()  # stage-times there counts the jobs run there
    assert not (target / "results/superpixels/.shard01.h5.tmp999999999").exists()
    assert sorted(p.name for p in (target / ".snakemake/metadata").iterdir()) == ["cmVzdWx0cw=="]
    assert (target / ".snakemake/incomplete/cmVzdWx0cw==").read_text() == "incomplete"
    assert not (target / ".sharing.tmp").exists()
    # a directory with results of its own is never overwritten; nothing to copy from is no copy
    copied.write_bytes(b"seed 1's own")
    assert not share_finished_run(source, target) and copied.read_bytes() == b"seed 1's own"
    assert not share_finished_run(tmp_path / "empty", tmp_path / "seed2")
    # outputs without Snakemake's records are not copied: the seed's trainings would look done
    (tmp_path / "unrecorded/results").mkdir(parents=True)
    assert not share_finished_run(tmp_path / "unrecorded", tmp_path / "seed3")
    assert not (tmp_path / "seed3/results").exists()


@pytest.mark.parametrize("extra, copied", [([], True), (["-n"], False), (["--rerun-triggers", "mtime"], False)])
def test_one_seed_after_another_starts_from_the_previous_seeds_run(tmp_path, monkeypatch, capsys, extra, copied):
    import sys

    import pipeline.seeds

    # a stand-in for Snakemake: each run writes an output named after its seed and a record of it
    run = ("import sys, pathlib, yaml; d = pathlib.Path(sys.argv[1]);"
           " seed = yaml.safe_load((d / 'config.yaml').read_text())['seed'];"
           " (d / 'results').mkdir(exist_ok=True); (d / f'results/seed{seed}.out').write_text('x');"
           " (d / '.snakemake/metadata').mkdir(parents=True, exist_ok=True);"
           " (d / '.snakemake/metadata/r').write_text('r')")
    monkeypatch.setattr(pipeline.seeds, "snakemake_command",
                        lambda workdir, cores, extra: [sys.executable, "-c", run, str(workdir)])
    monkeypatch.chdir(tmp_path)
    run_seeds([0, 1], [write_config(tmp_path / "tiny.yaml")], cores=1, out=tmp_path / "seeds", extra=extra)
    outputs = sorted(p.name for p in (tmp_path / "seeds/seed1/results").iterdir())
    assert outputs == (["seed0.out", "seed1.out"] if copied else ["seed1.out"])
    assert ("seed 1: copying seed 0's finished run" in capsys.readouterr().out) == copied
