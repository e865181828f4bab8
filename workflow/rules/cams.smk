# Stage make_cams: multi-scale CAMs per shard (pipeline/make_cams.py), stored as HDF5.
# One rule for every classifier: `cam` (the plain classifier, results/cam/) and each SC-CAM
# round's (results/sccam/k<k>/r<round>/cam/, see sccam.smk).


def cam_classifier(cams):
    """The classifier whose CAMs are written under results/<cams>/."""
    if cams == "cam":
        return "results/classifier/model.pt"
    k, round_ = re.fullmatch(r"sccam/k(\d+)/r(\d+)/cam", cams).groups()
    return f"results/sccam/k{k}/r{round_}/model.pt"


rule make_cams:
    input:
        lambda w: split_data(w.split),
        manifest="results/manifest/{split}/{shard}.tsv",
        model=lambda w: cam_classifier(w.cams),
    output:
        cams="results/{cams}/{split}/{shard}.h5",
        problems="results/{cams}/{split}/{shard}.problems.tsv",
    wildcard_constraints:
        cams=r"cam|sccam/k\d+/r\d+/cam",
    params:
        cfg=CFG["cams"],
        code=code_hash("pipeline.make_cams"),
    threads: 4
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        "results/logs/make_cams/{cams}/{split}/{shard}.log",
    script:
        "../scripts/make_cams.py"
