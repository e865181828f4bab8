import zlib

from pipeline.manifest import Record, digest, read_tsv, shard_name, shard_of, split_into_shards, write_tsv


def rec(i, labels=(1,)):
    return Record(image_id=f"img_{i:05d}", image=f"images/img_{i:05d}.jpg", labels=tuple(labels),
                  label_names=tuple(f"c{v}" for v in labels), mask="", meta={"k": i})


def test_shard_is_crc32_of_the_id():
    # the documented rule, so that other tools can recompute a shard
    assert shard_of("2007_000032", 64) == zlib.crc32(b"2007_000032") % 64
    assert all(0 <= shard_of(f"x{i}", 7) < 7 for i in range(100))


def test_adding_images_changes_only_the_shards_they_fall_in():
    old = [rec(i) for i in range(500)]
    new = [rec(i) for i in range(500, 510)]
    before = split_into_shards(old, 16)
    after = split_into_shards(old + new, 16)
    touched = {shard_name(shard_of(r.image_id, 16), 16) for r in new}
    for name, records in after.items():
        if name in touched:
            assert digest(records) != digest(before.get(name, []))
        else:
            assert records == before[name] and digest(records) == digest(before[name])
    assert len(touched) < 16


def test_shards_are_sorted_non_empty_and_cover_every_image():
    records = [rec(i) for i in range(50)]
    shards = split_into_shards(list(reversed(records)), 8)
    assert sorted(r.image_id for rs in shards.values() for r in rs) == [r.image_id for r in records]
    for rs in shards.values():
        assert rs and [r.image_id for r in rs] == sorted(r.image_id for r in rs)
    assert shard_name(3, 8) == "shard03" and shard_name(3, 1000) == "shard003"


def test_digest_ignores_order_and_sees_label_changes():
    records = [rec(i) for i in range(10)]
    assert digest(records) == digest(list(reversed(records)))
    changed = records[:9] + [rec(9, labels=(1, 2))]
    assert digest(changed) != digest(records)


def test_tsv_round_trip(tmp_path):
    records = [rec(i, labels=(2, 5)) for i in range(5)]
    write_tsv(records, tmp_path / "m.tsv")
    back = read_tsv(tmp_path / "m.tsv")
    assert back == records
    assert [r.meta for r in back] == [r.meta for r in records]
    header = (tmp_path / "m.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["image_id", "image", "labels", "label_names", "mask", "instances", "meta"]
