"""The codebase's conventions, checked by `make test`: ruff and snakefmt clean (settings in
pyproject.toml), `snakemake --lint` clean apart from the exception written down in
docs/layout.md, no import cycle in the package, and code hashes as narrow as the code a job runs."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import provenance

from conftest import REPO, SNAKEMAKE

BIN = Path(sys.executable).parent


def run(*argv):
    return subprocess.run([str(a) for a in argv], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    proc = run(BIN / "ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_snakefmt_would_change_nothing():
    proc = run(BIN / "snakefmt", "--check", "Snakefile", "workflow")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_snakemake_lint_reports_only_the_documented_exception():
    proc = run(SNAKEMAKE, "--lint")
    out = proc.stdout + proc.stderr
    # the lint ran through the whole workflow (a parse error would list no findings at all)
    assert "Traceback" not in out and "Error" not in out, out[-3000:]
    assert "Lints for rule" in out or "Congratulations" in out, out[-3000:]
    findings = set(re.findall(r"^    \* (.+?):?$", out, re.M))
    # every rule runs in the one environment `make` sets up (docs/layout.md, "Snakemake's lint")
    assert findings <= {"Specify a conda environment or container for each rule."}, findings
    assert "Specify a conda environment" in (REPO / "docs/layout.md").read_text()


def package_imports() -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in the file, deferred imports too)."""
    graph = {}
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        graph[name] = {m for m in provenance._imports(name, path) if m != name and m != "pipeline"}
    return graph


def test_the_package_has_no_import_cycle():
    graph = package_imports()
    # packages import their own modules (pipeline.datasets -> pipeline.datasets.voc); not a cycle
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    state = {}

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*stack, module, dep]))
            if dep not in state:
                visit(dep, [*stack, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    copy = tmp_path / "pipeline"
    shutil.copytree(REPO / "pipeline", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)
    for f in (provenance.module_closure, provenance.code_hash):
        f.cache_clear()
    yield copy
    for f in (provenance.module_closure, provenance.code_hash):
        f.cache_clear()


def stage_modules() -> set[str]:
    """The modules the rule files hash (code_hash("pipeline.x", ...))."""
    text = "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    return {m for args in re.findall(r"code_hash\(([^)]*)\)", text) for m in re.findall(r'"([\w.]+)"', args)}


def test_editing_the_training_loop_reruns_only_the_jobs_that_train(package_copy):
    stages = stage_modules()
    assert {"pipeline.evaluate", "pipeline.crf_masks", "pipeline.report", "pipeline.train_classifier"} <= stages
    before = {m: provenance.code_hash(m) for m in stages}
    training = package_copy / "training.py"
    training.write_text(training.read_text() + "\n# an edit of the training loop\n")
    provenance.code_hash.cache_clear()
    changed = {m for m in stages if provenance.code_hash(m) != before[m]}
    trains = {"pipeline.train_classifier", "pipeline.train_affinity", "pipeline.train_segmenter",
              "pipeline.train_sccam", "pipeline.eps", "pipeline.prm"}
    assert changed == trains & stages, sorted(changed)
    # and these in particular stay: evaluation, CRF, report, inference
    for m in ("pipeline.evaluate", "pipeline.crf_masks", "pipeline.report", "pipeline.summary",
              "pipeline.make_cams", "pipeline.random_walk", "pipeline.segment", "pipeline.saliency"):
        assert m not in changed


def test_the_stage_modules_the_rules_hash_exist():
    for module in stage_modules():
        assert provenance._module_file(module) is not None, module
        ast.parse(provenance._module_file(module).read_text())
