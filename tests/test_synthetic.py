import numpy as np
import pytest

from pipeline.datasets import synthetic as S
from pipeline.imageio import IGNORE, read_image, read_label_map

CFG = {"seed": 0, "n_images": {"train": 120, "val": 20}, "min_size": 64, "max_size": 96, "context_prob": 0.9}


@pytest.fixture(scope="module")
def samples():
    return [(i, S.render(CFG, "train", i)) for i in range(60)]


def test_same_seed_same_pixels_other_seed_other_pixels():
    a, b = S.render(CFG, "train", 3), S.render(CFG, "train", 3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = S.render({**CFG, "seed": 1}, "train", 3)
    assert a["image"].shape != c["image"].shape or not np.array_equal(a["image"], c["image"])


def test_sizes_dtypes_and_label_values(samples):
    for _, s in samples:
        h, w, _ = s["image"].shape
        assert 64 <= h <= 96 and 64 <= w <= 96
        assert s["image"].dtype == s["mask"].dtype == s["instances"].dtype == np.uint8
        values = set(np.unique(s["mask"]).tolist())
        assert values <= set(range(len(S.CLASSES) + 1)) | {IGNORE}


def test_manifest_labels_are_the_classes_in_the_mask(samples):
    records = S.manifest(CFG, "train", "root")
    for i, s in samples:
        in_mask = sorted(set(np.unique(s["mask"]).tolist()) - {0, IGNORE})
        assert list(records[i].labels) == in_mask, records[i]
        assert records[i].label_names == tuple(S.CLASSES[v - 1] for v in records[i].labels)


def test_ignore_band_surrounds_every_object(samples):
    for _, s in samples:
        m = s["mask"]
        fg = (m != 0) & (m != IGNORE)
        # no object pixel touches a background pixel directly: the band lies between
        assert not (fg[:, :-1] & (m[:, 1:] == 0)).any() and not (fg[:-1, :] & (m[1:, :] == 0)).any()
        assert (m == IGNORE).mean() < 0.2


def test_two_objects_of_one_class_are_two_instances():
    records = S.manifest(CFG, "train", "root")
    found = 0
    for i in range(80):
        scene = S.sample_scene(CFG["seed"], "train", i, CFG["context_prob"])
        if max(scene["counts"]) >= 2:
            inst = S.render(CFG, "train", i)["instances"]
            found += 1
            assert len(set(np.unique(inst).tolist()) - {0, IGNORE}) >= sum(scene["counts"]) - 1
    assert found >= 15  # same-class pairs are common, for instance masks
    assert records[0].meta["subtypes"]


def test_discriminative_part_is_at_most_a_third_of_the_object():
    """Measured on one object alone: pixels in the class's part colour over the object's area."""
    for c in range(len(S.CLASSES)):
        for i in range(300):
            scene = S.sample_scene(CFG["seed"], "val", i, CFG["context_prob"])
            if scene["classes"] == [c] and scene["counts"] == [1]:
                break
        else:
            pytest.fail(f"no image with one {S.CLASSES[c]} alone")
        s = S.render(CFG, "val", i)
        obj = s["instances"] == 1
        ref = S.part_colour(c)
        img = s["image"].astype(float)
        # the part alternates its colour with a darker shade of the same hue
        close = np.minimum(np.linalg.norm(img - ref, axis=2), np.linalg.norm(img - 0.55 * ref, axis=2)) < 40
        share = (close & obj).sum() / obj.sum()
        assert 0.1 < share < 0.36, (S.CLASSES[c], share)


def test_subtypes_differ_in_look_and_looks_are_shared_across_classes():
    looks = {(c, k): S.subtype_look(c, k) for c in range(len(S.CLASSES)) for k in range(S.N_SUBTYPES[c])}
    for c in range(len(S.CLASSES)):
        own = [looks[(c, k)] for k in range(S.N_SUBTYPES[c])]
        assert len({look[0] for look in own}) == len(own) and len({look[1] for look in own}) == len(own)
    for look in set(looks.values()):
        assert sum(v == look for v in looks.values()) >= 2  # no body look belongs to one class only
    assert all(2 <= n <= 3 for n in S.N_SUBTYPES)


def test_context_patterns_come_with_their_classes():
    for name, pattern in S.CONTEXT.items():
        c = S.CLASSES.index(name)
        with_cls = without = with_ctx_cls = with_ctx_without = 0
        for i in range(600):
            scene = S.sample_scene(0, "train", i, 0.9)
            has = pattern in scene["context"]
            if c in scene["classes"]:
                with_cls += 1
                with_ctx_cls += has
            else:
                without += 1
                with_ctx_without += has
        assert with_ctx_cls / with_cls > 0.8
        assert with_ctx_without / without < 0.08


def test_rails_are_background_below_the_train():
    for i in range(300):
        scene = S.sample_scene(0, "train", i, 0.9)
        if scene["classes"] == [0] and scene["counts"] == [1] and scene["context"] == ["rails"]:
            break
    else:
        pytest.fail("no image with one train on rails")
    s = S.render(CFG, "train", i)
    rail = np.all(np.abs(s["image"].astype(int) - (60, 60, 68)) < 12, axis=2)
    assert rail.sum() > 20
    assert (s["mask"][rail] != 1).mean() > 0.9  # rails are not the object


def test_generate_writes_readable_files(tmp_path):
    cfg = {**CFG, "n_images": {"val": 4}}
    assert S.generate(cfg, "val", tmp_path) == 4
    p = S.paths(tmp_path, "val_00002")
    expected = S.render(cfg, "val", 2)
    np.testing.assert_array_equal(read_image(p["image"]), expected["image"])
    np.testing.assert_array_equal(read_label_map(p["mask"]), expected["mask"])
    np.testing.assert_array_equal(read_label_map(p["instances"]), expected["instances"])
