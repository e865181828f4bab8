import numpy as np
import pytest
import torch

from pipeline import make_cams
from pipeline.backbones import Backbone
from pipeline.artifacts import ArtifactReader
from pipeline.datasets.synthetic import CLASSES
from pipeline.make_cams import multiscale_cams
from pipeline.manifest import Record, read_tsv, write_tsv
from pipeline.nets import Classifier, save_model
from pipeline.problems import read_report


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Classifier(len(CLASSES), Backbone("resnet18", 16)).eval()


def test_cams_have_image_size_and_unit_max(model):
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cams = multiscale_cams(model, rgb, [2, 5], scales=[1.0, 0.5, 1.5], flip=True)
    assert cams.shape == (2, 50, 70) and cams.dtype == np.float32
    assert cams.min() >= 0
    np.testing.assert_allclose(cams.reshape(2, -1).max(1), 1.0, rtol=1e-5)
    assert multiscale_cams(model, rgb, [], [1.0], True).shape == (0, 50, 70)


def test_flip_makes_cams_mirror_symmetric(model):
    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    a = multiscale_cams(model, rgb, [1], [1.0], flip=True)
    b = multiscale_cams(model, np.ascontiguousarray(rgb[:, ::-1]), [1], [1.0], flip=True)
    np.testing.assert_allclose(a, b[:, :, ::-1], atol=1e-4)


def test_scales_sum_before_normalisation(model):
    rgb = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    one = multiscale_cams(model, rgb, [0], [1.0], flip=False)
    with torch.no_grad():
        x = make_cams.to_tensor(rgb)[None]
        raw = model.cams(x, torch.tensor([0]))
        up = torch.nn.functional.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(one, (up / up.max()).numpy(), rtol=1e-4, atol=1e-6)


def test_run_writes_artifact_and_skips_bad_images(tmp_path, tiny_dataset, model):
    records = read_tsv(tiny_dataset["val"])[:3]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    records.append(Record(image_id="broken", image=str(tmp_path / "broken.png"), labels=(1,)))
    write_tsv(records, tmp_path / "m.tsv")
    save_model(model, tmp_path / "model.pt", {"classes": list(CLASSES)})
    cfg = {"scales": [1.0, 0.5], "flip": True}
    make_cams.run(manifest_path=tmp_path / "m.tsv", model_path=tmp_path / "model.pt", cfg=cfg, device="cpu",
                  code_hash="c0de", split="val", shard="shard00", out_path=tmp_path / "cams.h5",
                  problems_path=tmp_path / "problems.tsv")
    with ArtifactReader(tmp_path / "cams.h5", stage="cam") as r:
        assert r.image_ids() == sorted(x.image_id for x in records[:3])
        for rec in records[:3]:
            d = r.read(rec.image_id, "cams", "keys")
            assert list(d["keys"]) == list(rec.labels) and d["cams"].dtype == np.float16
            assert r.image_attrs(rec.image_id)["image_path"] == rec.image
        assert r.attrs["code_hash"] == "c0de" and r.params() == cfg
    rows = read_report(tmp_path / "problems.tsv")
    assert len(rows) == 1 and rows[0][0] == "broken" and "broken.png: cannot decode" in rows[0][2]
