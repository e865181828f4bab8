# Stage dataset: the generated synthetic images (when chosen) and the manifests.
# Manifests are built when the workflow is parsed; a rule writes each one when its rows
# change (their digest is a param), so adding images reruns only the shards they fall in.

if DS["name"] == "synthetic":

    rule synthetic_data:
        output:
            directory(datasets.synthetic_root("{split}")),
        params:
            cfg=lambda w: {**DS["synthetic"], "n_images": {w.split: DS["synthetic"]["n_images"][w.split]}},
            code=code_hash("pipeline.datasets.synthetic"),
        threads: 4
        resources:
            mem_mb=2000,
            runtime=30,
        log:
            "results/logs/synthetic_data/{split}.log",
        script:
            "../scripts/synthetic_data.py"


rule manifest_shard:
    output:
        "results/manifest/{split}/{shard}.tsv",
    params:
        digest=lambda w: mf.digest(SHARDS[w.split][w.shard]),
        code=code_hash("pipeline.manifest"),
    localrule: True
    log:
        "results/logs/manifest/{split}/{shard}.log",
    run:
        mf.write_tsv(SHARDS[wildcards.split][wildcards.shard], output[0])
        Path(log[0]).write_text(f"{len(SHARDS[wildcards.split][wildcards.shard])} images\n")


rule manifest:
    output:
        manifest="results/manifest/{split}.tsv",
        left_out="results/manifest/{split}.problems.tsv",
    params:
        digest=lambda w: mf.digest(MANIFESTS[w.split]),
        left_out=lambda w: LEFT_OUT[w.split],
        code=code_hash("pipeline.manifest", "pipeline.problems"),
    localrule: True
    log:
        "results/logs/manifest/{split}.log",
    run:
        from pipeline.problems import ProblemReport

        mf.write_tsv(MANIFESTS[wildcards.split], output.manifest)
        report = ProblemReport(output.left_out)
        for image_id, reason in params.left_out:
            report.add(image_id, "", reason)
        report.write()
        Path(log[0]).write_text(f"{len(MANIFESTS[wildcards.split])} images, {len(report)} left out\n")
