"""affinity-curve: AffinityNets on nested subsets of one half of the training images, checked on the other."""
import json

import pytest

from pipeline.affinity_curve import (a_and_b, cams_best, check_recipe, equal_step_epochs, recipe, table,
                                     training_images, training_inputs)
from pipeline.manifest import Record


def records(n):
    return [Record(image_id=f"im{i:03d}", image=f"im{i:03d}.jpg", mask=f"im{i:03d}.png", labels=(1,))
            for i in range(n)]


def test_halves_split_the_images_once_and_for_all():
    recs = records(41)
    a, b = a_and_b(recs)
    assert len(b) == 20 and len(a) == 21
    assert {r.image_id for r in a}.isdisjoint({r.image_id for r in b})
    assert {r.image_id for r in a} | {r.image_id for r in b} == {r.image_id for r in recs}
    assert a_and_b(recs) == (a, b)  # the same halves whatever the networks' seeds
    assert [r.image_id for r in a] != sorted(r.image_id for r in a)  # so that A's first n are a random subset


def test_training_images_are_nested_subsets_of_a_or_the_whole_split():
    recs = records(30)
    a, b = a_and_b(recs)
    assert training_images(recs, 5) == a[:5] and training_images(recs, 10)[:5] == a[:5]
    assert training_images(recs, 15) == a and not set(map(id, a)) & set(map(id, b))
    assert training_images(recs, 30) == recs  # both halves: B seen in training
    with pytest.raises(ValueError, match="size 16: a curve trains on 1 to 15 images of A, or on all 30"):
        training_images(recs, 16)
    with pytest.raises(ValueError, match="size 0"):
        training_images(recs, 0)


def test_a_smaller_b_keeps_the_default_a_first_and_gives_a_the_rest():
    recs = records(30)
    a, b = a_and_b(recs)
    a8, b8 = a_and_b(recs, held_out=8)
    assert b8 == b[:8] and a8 == a + b[8:]  # the default A first: its sizes train on the same images
    assert training_images(recs, 10, held_out=8) == training_images(recs, 10)
    assert training_images(recs, 22, held_out=8) == a8 and not {r.image_id for r in a8} & {r.image_id for r in b8}
    with pytest.raises(ValueError, match="held out 16: the curve checks on 1 to 15 images of the split's 30"):
        a_and_b(recs, held_out=16)
    with pytest.raises(ValueError, match="size 23: a curve trains on 1 to 22 images of A"):
        training_images(recs, 23, held_out=8)


def test_each_network_takes_about_the_run_s_number_of_steps():
    assert [equal_step_epochs(3, 330, n) for n in (41, 82, 165, 330)] == [24, 12, 6, 3]
    assert equal_step_epochs(3, 330, 1000) == 1  # never none


def test_table_gives_each_size_s_mean_and_spread_and_the_gain_over_the_cams():
    def row(size, seed, auc, walk, b_seen=False):
        return {"size": size, "seed": seed, "epochs": 990 // size, "b_seen": b_seen, "auc": auc,
                "mean_w_same": 0.7, "mean_w_different": 0.5, "cam_b": 0.30, "walk_32": walk, "full_links_32": 0.4}

    text = table([row(82, 0, 0.70, 0.31), row(82, 1, 0.74, 0.35), row(41, 0, 0.64, 0.27),
                  row(330, 0, 0.82, 0.34, b_seen=True)]).splitlines()
    assert text[0].split() == ["images", "seeds", "epochs", "AUC", "walk", "32", "steps", "(over", "cam)"]
    assert text[1].split() == ["41", "1", "24", "0.640", "27.0", "(-3.0)"]
    assert text[2].split() == ["82", "2", "12", "0.720", "+-", "0.028", "33.0", "+-", "2.8", "(+3.0", "+-", "2.8)"]
    assert text[3].split() == ["330", "(B", "seen)", "1", "3", "0.820", "34.0", "(+4.0)"]


def test_a_kept_network_s_recipe_is_checked_before_reuse(tmp_path, caplog):
    wanted = {"images": 41, "seed": 0, "affinity.lr": 0.1}
    check_recipe(tmp_path, wanted)  # nothing kept: nothing to check
    (tmp_path / "model.pt").write_bytes(b"")
    check_recipe(tmp_path, wanted)
    assert "without recipe.json, reused unchecked" in caplog.text
    (tmp_path / "recipe.json").write_text('{"images": 41, "seed": 0, "affinity.lr": 0.1}')
    check_recipe(tmp_path, wanted)
    with pytest.raises(ValueError, match=r"another recipe \(affinity.lr, seed differ\)"):
        check_recipe(tmp_path, {**wanted, "seed": 1, "affinity.lr": 0.01})
    (tmp_path / "recipe.json").write_text('{"images": 4')
    with pytest.raises(ValueError, match="recipe.json: not JSON"):
        check_recipe(tmp_path, wanted)


def test_the_cams_score_on_b_names_the_cam_folder_when_no_image_has_cams(tmp_path, caplog):
    with pytest.raises(ValueError, match=r"results/cam/train: no CAMs of the 3 images of B to score"):
        cams_best(records(3), lambda image_id: None, 2, [0.1, 0.2], tmp_path / "results" / "cam" / "train")
    assert caplog.text.count("left out of the CAMs' score on B") == 3


def test_a_recipe_holds_its_inputs_by_content_so_a_moved_run_keeps_its_networks(tmp_path):
    run = tmp_path / "results"
    (run / "classifier").mkdir(parents=True)
    (run / "classifier" / "model.pt").write_bytes(b"weights")
    (run / "labels").mkdir()
    for name in ("shard00.h5", "shard01.h5"):
        (run / "labels" / name).write_bytes(b"labels")
    cfg = {"affinity": {"lr": 0.1, "epochs": 3}}

    def wanted(results):
        inputs = training_inputs(results / "classifier" / "model.pt", sorted((results / "labels").glob("*.h5")))
        assert len(inputs["code"]) == 16
        return recipe(cfg, inputs, records(4), 0, 3)

    kept = tmp_path / "curve" / "n4_s0"
    kept.mkdir(parents=True)
    (kept / "recipe.json").write_text(json.dumps(wanted(run)))
    moved = tmp_path / "moved"
    run.rename(moved)
    check_recipe(kept, wanted(moved))  # the same files elsewhere: the same recipe
    (moved / "labels" / "shard01.h5").write_bytes(b"labels of another run")
    with pytest.raises(ValueError, match=r"another recipe \(affinity_labels differ\)"):
        check_recipe(kept, wanted(moved))
    # the classifier counts only where the network starts from it
    labels = sorted((moved / "labels").glob("*.h5"))
    without = recipe(cfg, training_inputs(None, labels), records(4), 0, 3)
    (moved / "classifier" / "model.pt").write_bytes(b"other weights")
    assert without == recipe(cfg, training_inputs(None, labels), records(4), 0, 3)
    (kept / "recipe.json").write_text(json.dumps(wanted(moved)))
    (moved / "classifier" / "model.pt").write_bytes(b"weights of a third run")
    with pytest.raises(ValueError, match=r"another recipe \(classifier differ\)"):
        check_recipe(kept, wanted(moved))
