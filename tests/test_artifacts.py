import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from pipeline.artifacts import ArtifactError, ArtifactReader, ArtifactWriter, ShardSet, shard_index
from pipeline.provenance import params_hash

PARAMS = {"scales": [1.0, 0.5], "flip": True}


def write(path, **extra):
    with ArtifactWriter(path, stage="cam", split="val", shard="shard00", classes=["cat", "dog"],
                        params=PARAMS, code_hash="abc123", **extra) as w:
        w.add("img_1", {"image_path": "x.png", "height": 4, "width": 5},
              cams=np.linspace(0, 1, 40, dtype=np.float16).reshape(2, 4, 5), keys=np.array([1, 2], np.uint8))
        w.add("img_2", {"height": 3, "width": 3}, cams=np.zeros((0, 3, 3), np.float16), keys=np.zeros(0, np.uint8))
    return path


def test_round_trip_and_provenance(tmp_path):
    path = write(tmp_path / "a.h5")
    with ArtifactReader(path, stage="cam") as r:
        assert r.image_ids() == ["img_1", "img_2"]
        d = r.read("img_1", "cams", "keys")
        assert d["cams"].dtype == np.float16 and d["cams"].shape == (2, 4, 5)
        assert list(d["keys"]) == [1, 2]
        assert r.read("img_2", "cams")["cams"].shape == (0, 3, 3)
        a = r.attrs
        assert a["stage"] == "cam" and a["split"] == "val" and a["shard"] == "shard00"
        assert a["params_hash"] == params_hash(PARAMS) and a["code_hash"] == "abc123"
        assert a["n_images"] == 2 and json.loads(a["classes"]) == ["cat", "dog"]
        assert {"torch", "numpy", "h5py", "hdf5"} <= set(json.loads(a["versions"]))
        assert r.params() == PARAMS
        assert r.image_attrs("img_1")["image_path"] == "x.png"


def test_arrays_are_compressed_with_standard_filters(tmp_path):
    with h5py.File(write(tmp_path / "a.h5"), "r") as f:
        ds = f["images/img_1/cams"]
        assert ds.compression == "gzip" and ds.shuffle and ds.chunks is not None


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "b.h5"
    with pytest.raises(RuntimeError):
        with ArtifactWriter(path, stage="cam", split="val", shard="s", classes=[], params={}, code_hash="x") as w:
            w.add("img_1", cams=np.zeros((1, 2, 2)))
            assert not path.exists()  # still under its temporary name
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_rewrite_replaces_atomically(tmp_path):
    path = write(tmp_path / "a.h5")
    with ArtifactWriter(path, stage="cam", split="val", shard="shard00", classes=[], params={"v": 2},
                        code_hash="y") as w:
        w.add("only", keys=np.zeros(0))
    with ArtifactReader(path) as r:
        assert r.image_ids() == ["only"] and r.params() == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_reader_errors_name_file_image_and_problem(tmp_path):
    with pytest.raises(ArtifactError, match="nope.h5: artifact not found"):
        ArtifactReader(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ArtifactError, match="junk.h5: not a readable HDF5 file"):
        ArtifactReader(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ArtifactError, match="plain.h5: not a pipeline artifact"):
        ArtifactReader(tmp_path / "plain.h5")
    path = write(tmp_path / "a.h5")
    with pytest.raises(ArtifactError, match="expected an artifact of stage 'rw', found 'cam'"):
        ArtifactReader(path, stage="rw")
    with ArtifactReader(path) as r:
        with pytest.raises(ArtifactError, match=r"a.h5: image img_9: not in this artifact"):
            r.read("img_9", "cams")
        with pytest.raises(ArtifactError, match=r"a.h5: image img_1: dataset 'labels' missing"):
            r.read("img_1", "labels")


def test_readers_see_the_complete_old_file_while_it_is_rewritten(tmp_path):
    path = write(tmp_path / "a.h5")
    with ArtifactWriter(path, stage="cam", split="val", shard="shard00", classes=[], params={"v": 2},
                        code_hash="y") as w:
        w.add("new", keys=np.zeros(1))
        with ArtifactReader(path) as r:  # opened while the writer holds its (temporary) file open
            assert r.image_ids() == ["img_1", "img_2"] and r.params() == PARAMS
    with ArtifactReader(path) as r:
        assert r.image_ids() == ["new"]


def test_a_tool_holding_the_file_with_hdf5_locking_does_not_block_a_rerun(tmp_path):
    """h5ls, HDFView or h5py.File(path) open with HDF5's own file lock; a job rewriting the
    artifact meanwhile still succeeds, and the tool keeps its complete old view."""
    path = write(tmp_path / "a.h5")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, h5py; f = h5py.File(sys.argv[1], 'r', locking=True); print(len(f['images']), flush=True);"
        "sys.stdin.readline(); print(sorted(f['images']), flush=True)"), str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "2"
        with ArtifactWriter(path, stage="cam", split="val", shard="shard00", classes=[], params={}, code_hash="y") as w:
            w.add("new", keys=np.zeros(1))
        with ArtifactReader(path) as r:
            assert r.image_ids() == ["new"]
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "['img_1', 'img_2']"
    finally:
        holder.kill()
        holder.wait()


def test_group_names_are_checked(tmp_path):
    with pytest.raises(ArtifactError, match="cannot name an HDF5 group"):
        with ArtifactWriter(tmp_path / "c.h5", stage="cam", split="v", shard="s", classes=[], params={},
                            code_hash="x") as w:
            w.add("a/b", keys=np.zeros(1))
    assert not (tmp_path / "c.h5").exists()


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from pipeline.atomic import remove_leftovers, write_text

    target = tmp_path / "out" / "table.tsv"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import time; from pipeline.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half'); print('written', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "written"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    left = target.with_name(f".table.tsv.tmp{writer.pid}")
    assert left.read_text() == "half" and not target.exists()  # what a SIGKILL leaves
    busy = target.with_name(f".table.tsv.tmp{os.getppid()}")  # a live process's write in progress
    busy.write_text("busy")
    write_text(target, "done")
    assert target.read_text() == "done" and not left.exists() and busy.exists()
    other = tmp_path / "out" / "sub" / ".cams.h5.tmp4194303"  # above pid_max: nobody's
    other.parent.mkdir()
    other.write_bytes(b"x")
    assert remove_leftovers(tmp_path) == [other] and busy.exists()


def test_a_shard_set_finds_each_image_in_its_shard_and_closes_them_all(tmp_path):
    first = write(tmp_path / "shard00.h5")
    with ArtifactWriter(tmp_path / "shard01.h5", stage="cam", split="val", shard="shard01", classes=["cat", "dog"],
                        params=PARAMS, code_hash="abc123") as w:
        w.add("img_3", {"height": 2, "width": 2}, cams=np.ones((1, 2, 2), np.float16), keys=np.array([2], np.uint8))
    second = tmp_path / "shard01.h5"
    with ShardSet([first, second], stage="cam") as shards:
        assert shards.image_ids() == ["img_1", "img_2", "img_3"]
        assert "img_3" in shards and "img_9" not in shards
        assert shards.reader("img_3").path == second and shards.reader("img_1").path == first
        assert list(shards.read("img_3", "keys")["keys"]) == [2]
        readers = shards.readers
    assert not any(rd.file.id.valid for rd in readers)
    assert shard_index([first, second], stage="cam") == {"img_1": str(first), "img_2": str(first),
                                                         "img_3": str(second)}


def test_a_shard_set_with_an_unreadable_shard_names_it_and_leaves_none_open(tmp_path, monkeypatch):
    good = write(tmp_path / "shard00.h5")
    bad = tmp_path / "shard01.h5"
    bad.write_bytes(b"not hdf5")
    opened = []
    real_init = ArtifactReader.__init__

    def recording_init(self, path, **kw):
        real_init(self, path, **kw)
        opened.append(self)

    monkeypatch.setattr(ArtifactReader, "__init__", recording_init)
    with pytest.raises(ArtifactError, match="shard01.h5: not a readable HDF5 file"):
        ShardSet([good, bad], stage="cam")
    assert len(opened) == 1 and not opened[0].file.id.valid
