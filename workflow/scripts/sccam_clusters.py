# Adapter: rule sccam_clusters -> pipeline.sccam.run_clusters
from pipeline import sccam
from pipeline.logs import stage_logging
from threadpoolctl import threadpool_limits

# k-means (scikit-learn's OpenMP / BLAS threads): no torch in this job
with stage_logging(snakemake.log[0]), threadpool_limits(snakemake.threads):
    p, out = snakemake.params, snakemake.output
    sccam.run_clusters(manifest_path=snakemake.input.manifest, feature_paths=snakemake.input.features,
                       classes=p.classes, cfg=p.cfg, seed=p.seed, round_=int(snakemake.wildcards.round), split=p.split,
                       code_hash=p.code, out_path=out.clusters, report_path=out.report, picture_path=out.picture)
