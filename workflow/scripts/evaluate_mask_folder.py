# Adapter: rule evaluate_mask_folder -> pipeline.mask_folders.evaluate_mask_folder
from pipeline import manifest as mf
from pipeline.logs import stage_logging
from pipeline.mask_folders import evaluate_mask_folder

with stage_logging(snakemake.log[0]):
    p = snakemake.params
    records = [r for path in snakemake.input.manifests for r in mf.read_tsv(path)]
    evaluate_mask_folder(folder=p.folder, records=records, classes=p.classes, split=p.split,
                         out_path=snakemake.output.metrics, problems_path=snakemake.output.problems,
                         stage=snakemake.wildcards.stage)
