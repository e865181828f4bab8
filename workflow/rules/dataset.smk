# Stage dataset: the generated synthetic images (when chosen) and the manifests.
# Manifests are built when the workflow is parsed; a rule writes each one when its rows
# change (their digest is a param), so adding images reruns only the shards they fall in.

if DS["name"] == "synthetic":

    rule synthetic_data:
        output:
            directory(datasets.synthetic_root("{split}")),
        log:
            "results/logs/synthetic_data/{split}.log",
        threads: 4
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            cfg=lambda w: {**DS["synthetic"], "n_images": {w.split: DS["synthetic"]["n_images"][w.split]}},
            code=code_hash("pipeline.datasets.synthetic"),
        script:
            "../scripts/synthetic_data.py"


rule manifest_shard:
    output:
        "results/manifest/{split}/{shard}.tsv",
    log:
        "results/logs/manifest/{split}/{shard}.log",
    benchmark:
        "results/benchmarks/manifest_shard/{split}/{shard}.tsv"
    localrule: True
    params:
        digest=lambda w: mf.digest(SHARDS[w.split][w.shard]),
        code=code_hash("pipeline.manifest"),
    run:
        Path(log[0]).write_text(mf.write_shard(SHARDS[wildcards.split][wildcards.shard], output[0]))


rule manifest:
    output:
        manifest="results/manifest/{split}.tsv",
        left_out="results/manifest/{split}.problems.tsv",
    log:
        "results/logs/manifest/{split}.log",
    benchmark:
        "results/benchmarks/manifest/{split}.tsv"
    localrule: True
    params:
        digest=lambda w: mf.digest(MANIFESTS[w.split]),
        left_out=lambda w: LEFT_OUT[w.split],
        code=code_hash("pipeline.manifest", "pipeline.problems"),
    run:
        Path(log[0]).write_text(mf.write_split(MANIFESTS[wildcards.split], params.left_out, *output))
