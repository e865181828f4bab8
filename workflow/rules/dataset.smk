# Stage dataset: the generated synthetic images (when chosen) and the manifests.
# A shard's manifest is rewritten only when its rows change (its digest is a param), so
# adding images reruns only the shards they fall in.

if DATA_ROOT:

    rule synthetic_data:
        output:
            directory(str(DATA_ROOT)),
        params:
            cfg=DS["synthetic"],
            code=code_hash("pipeline.datasets.synthetic"),
        threads: 4
        resources:
            mem_mb=2000,
            runtime=30,
        log:
            "results/logs/synthetic_data.log",
        script:
            "../scripts/synthetic_data.py"


rule manifest_shard:
    input:
        data_inputs,
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
    input:
        lambda w: shard_files("results/manifest/{split}/{shard}.tsv", w.split),
    output:
        manifest="results/manifest/{split}.tsv",
        left_out="results/manifest/{split}.problems.tsv",
    params:
        left_out=lambda w: LEFT_OUT[w.split],
        code=code_hash("pipeline.manifest", "pipeline.problems"),
    localrule: True
    log:
        "results/logs/manifest/{split}.log",
    run:
        from pipeline.problems import ProblemReport

        records = [r for path in input for r in mf.read_tsv(path)]
        mf.write_tsv(records, output.manifest)
        report = ProblemReport(output.left_out)
        for image_id, reason in params.left_out:
            report.add(image_id, "", reason)
        report.write()
        Path(log[0]).write_text(f"{len(records)} images, {len(report)} left out\n")
