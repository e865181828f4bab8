import pytest

from pipeline import provenance
from pipeline.provenance import code_hash, module_closure, params_hash


def test_closure_follows_imports_within_the_package():
    closure = module_closure("pipeline.make_cams")
    assert {"pipeline", "pipeline.make_cams", "pipeline.nets", "pipeline.artifacts", "pipeline.imageio",
            "pipeline.manifest"} <= set(closure)
    # inference trains nothing: the training loop is not part of its code
    assert "pipeline.evaluate" not in closure and "pipeline.datasets.voc" not in closure
    assert "pipeline.training" not in closure
    assert "pipeline.datasets.common" in module_closure("pipeline.datasets.voc")  # relative imports
    # training and the walk share the grid's pair geometry, not each other: a walk edit retrains nothing
    assert "pipeline.grid_pairs" in module_closure("pipeline.train_affinity")
    assert "pipeline.grid_pairs" in module_closure("pipeline.random_walk")
    assert "pipeline.random_walk" not in module_closure("pipeline.train_affinity")
    assert "pipeline.train_affinity" not in module_closure("pipeline.random_walk")


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "stage.py").write_text("from .sub import helper\nimport numpy\n")
    (pkg / "sub" / "helper.py").write_text("X = 1\n")
    (pkg / "other.py").write_text("Y = 1\n")
    monkeypatch.setattr(provenance, "PACKAGE_DIR", pkg)
    monkeypatch.setattr(provenance, "PACKAGE", "fakepkg")
    for f in (provenance.module_closure, provenance.code_hash):
        f.cache_clear()
    yield pkg
    for f in (provenance.module_closure, provenance.code_hash):
        f.cache_clear()


def test_editing_an_imported_module_changes_the_hash_and_others_do_not(fake_package):
    assert set(provenance.module_closure("fakepkg.stage")) == {"fakepkg", "fakepkg.stage", "fakepkg.sub",
                                                               "fakepkg.sub.helper"}
    before = provenance.code_hash("fakepkg.stage")
    (fake_package / "other.py").write_text("Y = 2\n")
    provenance.code_hash.cache_clear()
    assert provenance.code_hash("fakepkg.stage") == before
    (fake_package / "sub" / "helper.py").write_text("X = 2\n")
    provenance.code_hash.cache_clear()
    assert provenance.code_hash("fakepkg.stage") != before


def test_code_hash_differs_between_stages():
    assert code_hash("pipeline.make_cams") != code_hash("pipeline.evaluate")


def test_params_hash_ignores_key_order():
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
