# Target predict: a trained segmenter (and its dense CRF) on images without labels or masks
# (config predict: a folder of images, or a VOC split such as test), through the rules segment
# and crf_masks -> results/<segmenter>[_crf]/<predict split>/<shard>.h5 and png/<shard>/.

if PREDICT_SPLIT:
    PREDICT_SEGMENTER = CFG["predict"]["segmenter"] or next(iter(PLAN.segmenters))
    if PREDICT_SEGMENTER not in PLAN.segmenters:
        raise ValueError(
            f"predict.segmenter: {PREDICT_SEGMENTER} is not a segmenter of this configuration "
            f"(one of {', '.join(PLAN.segmenters)})"
        )
    PREDICT_STAGE = PREDICT_SEGMENTER + ("_crf" if CFG["predict"]["crf"] else "")

    rule predict:
        input:
            masks=shard_files(f"results/{PREDICT_STAGE}/{{split}}/{{shard}}.h5", PREDICT_SPLIT),
            png=shard_files(f"results/{PREDICT_STAGE}/{{split}}/png/{{shard}}", PREDICT_SPLIT),
        localrule: True
        run:
            print(
                f"\nPredictions of {PREDICT_STAGE} on {len(MANIFESTS[PREDICT_SPLIT])} images (split {PREDICT_SPLIT}): "
                f"results/{PREDICT_STAGE}/{PREDICT_SPLIT}/<shard>.h5 and png/<shard>/<image_id>.png; a flat "
                f"folder: python -m pipeline export-masks {PREDICT_STAGE} {PREDICT_SPLIT} DIR\n"
            )
