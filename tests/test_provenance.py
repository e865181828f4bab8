from pipeline.provenance import code_hash, module_closure, params_hash


def test_closure_follows_imports_within_the_package():
    closure = module_closure("pipeline.make_cams")
    assert {"pipeline", "pipeline.make_cams", "pipeline.nets", "pipeline.artifacts", "pipeline.imageio",
            "pipeline.manifest", "pipeline.training"} <= set(closure)
    assert "pipeline.evaluate" not in closure and "pipeline.datasets.voc" not in closure
    assert "pipeline.datasets.common" in module_closure("pipeline.datasets.voc")  # relative imports


def test_code_hash_is_stable_and_differs_between_stages():
    assert code_hash("pipeline.make_cams") == code_hash("pipeline.make_cams")
    assert code_hash("pipeline.make_cams") != code_hash("pipeline.evaluate")


def test_params_hash_ignores_key_order():
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
