"""SC-CAM (Chang et al., CVPR 2020): sub-categories found by clustering, in rounds.

Round r starts from the classifier of round r - 1 (round 1 from the plain CAM classifier):
  1. sccam_features (pipeline/sccam_features.py): a global-average-pooled backbone feature
     per training image (the whole image at scale 1, no flip), stored per shard;
  2. sccam_clusters: for each parent class c, k-means on the features of the images that
     contain c; every image gets one sub-category j < k per present class, its label
     c * k + j among the C x k sub-categories. A class with fewer images than k gets as many
     clusters as it has images (with a warning), a class without images none;
  3. train_sccam (pipeline/train_sccam.py): the two-head classifier learns parent and
     sub-category labels; its CAMs (parent head) are round r's.
Where the dataset knows each object's sub-type (the synthetic data), the clusters are scored
against it: purity (share of the images of a class that sit in a cluster whose majority
sub-type is theirs) and normalised mutual information, per class and pooled over classes.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from . import manifest as mf
from .artifacts import ArtifactReader, ArtifactWriter
from .atomic import write_text
from .figures import pyplot, save_figure

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- clustering


@dataclass
class SubCategories:
    """assign[i, c]: sub-category of image i within class c (0-based), -1 where c is absent;
    centres[c]: [k_c, D] cluster centres (k_c <= k, 0 rows for a class without images)."""
    k: int
    assign: np.ndarray
    centres: list[np.ndarray]
    warnings: list[str]

    def sizes(self, c: int) -> np.ndarray:
        return np.bincount(self.assign[self.assign[:, c] >= 0, c], minlength=len(self.centres[c]))


def subcategory_target(class_index: np.ndarray, clusters: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """Multi-hot float32 [n_classes * k] target: 1 at c * k + j for each present class c
    (0-based) and its sub-category j."""
    t = np.zeros(n_classes * k, np.float32)
    t[np.asarray(class_index, int) * k + np.asarray(clusters, int)] = 1.0
    return t


def cluster_subcategories(features: np.ndarray, present: np.ndarray, k: int, seed: int, max_iter: int = 300,
                          n_init: int = 10, class_names=None) -> SubCategories:
    """k-means per parent class on the features [N, D] of the images with present[:, c] set
    ([N, C] booleans); classes with fewer than k images get one cluster per image."""
    from sklearn.cluster import KMeans

    n, n_classes = present.shape
    assign = np.full((n, n_classes), -1, np.int16)
    centres, warnings = [], []
    for c in range(n_classes):
        name = class_names[c] if class_names else str(c + 1)
        rows = np.flatnonzero(present[:, c])
        if len(rows) == 0:
            warnings.append(f"class {name}: no training image, no sub-categories")
            centres.append(np.zeros((0, features.shape[1]), np.float32))
            continue
        k_c = min(k, len(rows))
        if k_c < k:
            warnings.append(f"class {name}: {len(rows)} images, fewer than k = {k}: {k_c} sub-categories")
        km = KMeans(n_clusters=k_c, random_state=seed, max_iter=max_iter, n_init=n_init)
        assign[rows, c] = km.fit_predict(features[rows].astype(np.float64))
        centres.append(km.cluster_centers_.astype(np.float32))
    for w in warnings:
        log.warning("%s", w)
    return SubCategories(k, assign, centres, warnings)


def cluster_purity(assign: np.ndarray, truth: np.ndarray, class_names=None) -> dict | None:
    """Agreement of the clusters with known sub-types, both [N, C] ints with -1 where the class
    is absent (or, in `truth`, unknown). Purity: per class, the images in each cluster's
    majority sub-type over the class's images; NMI: sklearn's normalised mutual information.
    Pooled over classes weighted by their images. None when nothing is known."""
    from sklearn.metrics import normalized_mutual_info_score

    per_class, majority, nmi_sum, total = {}, 0, 0.0, 0
    for c in range(assign.shape[1]):
        rows = np.flatnonzero((assign[:, c] >= 0) & (truth[:, c] >= 0))
        if len(rows) == 0:
            continue
        a, t = assign[rows, c], truth[rows, c]
        hits = sum(np.bincount(t[a == j]).max() for j in np.unique(a))
        nmi = float(normalized_mutual_info_score(t, a))
        name = class_names[c] if class_names else str(c + 1)
        per_class[name] = {"images": len(rows), "purity": hits / len(rows), "nmi": nmi,
                           "clusters": len(np.unique(a)), "subtypes": len(np.unique(t))}
        majority, nmi_sum, total = majority + hits, nmi_sum + nmi * len(rows), total + len(rows)
    if total == 0:
        return None
    return {"purity": majority / total, "nmi": nmi_sum / total, "per_class": per_class}


def known_subtypes(records, classes) -> np.ndarray | None:
    """[N, C] true sub-type per image and present class from the manifest's meta (the
    synthetic data records them), -1 elsewhere; None when the dataset has none."""
    truth = np.full((len(records), len(classes)), -1, np.int16)
    index = {name: c for c, name in enumerate(classes)}
    for i, r in enumerate(records):
        for name, sub in (r.meta or {}).get("subtypes", {}).items():
            if name not in index:
                raise ValueError(f"image {r.image_id}: its manifest meta names the sub-type of {name!r}, "
                                 f"which is not a class of the dataset ({', '.join(classes)})")
            truth[i, index[name]] = sub
    return truth if (truth >= 0).any() else None


# ---------------------------------------------------------------- the picture


def embed_2d(features: np.ndarray, method: str, seed: int) -> np.ndarray:
    """[N, 2] embedding of the features: t-SNE (as in the paper's analysis) or PCA."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = features.astype(np.float64)
    if not np.ptp(x, axis=0).any():  # every image the same point (a collapsed network): t-SNE would crash
        return np.zeros((len(x), 2))
    if len(x) < 3:
        return np.pad(x[:, :2], ((0, 0), (0, max(0, 2 - x.shape[1]))))
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    x = PCA(n_components=min(50, *x.shape), random_state=seed).fit_transform(x)  # t-SNE's usual first step
    return TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca",
                random_state=seed).fit_transform(x)


def draw_embedding(path, xy: np.ndarray, subs: SubCategories, classes, truth: np.ndarray | None, title: str) -> None:
    """Scatter of (image, present class) pairs coloured by parent class, by cluster and, when
    known, by true sub-type; written atomically as PNG."""
    plt = pyplot()
    img, cls = np.nonzero(subs.assign >= 0)
    colourings = [("parent class", cls, classes), ("cluster (within its class)", subs.assign[img, cls], None)]
    if truth is not None:
        colourings.append(("true sub-type (synthetic data)", truth[img, cls], None))
    fig, axes = plt.subplots(1, len(colourings), figsize=(5.5 * len(colourings), 5.2), squeeze=False)
    markers = "os^vD<>pPX*h"
    for ax, (name, colour, legend) in zip(axes[0], colourings):
        cmap = plt.get_cmap("tab10" if colour.max(initial=0) < 10 else "tab20")
        for c in np.unique(cls):  # one marker per parent class, so clusters of classes stay apart
            sel = cls == c
            ax.scatter(xy[img[sel], 0], xy[img[sel], 1], c=cmap(colour[sel] % cmap.N), s=9,
                       marker=markers[c % len(markers)], linewidths=0, label=legend[c] if legend else None)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        if legend:
            ax.legend(fontsize=7, markerscale=1.5, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


# ---------------------------------------------------------------- the stage


def read_features(feature_paths, records) -> tuple[list, np.ndarray]:
    """(records that have a feature, in manifest order, [N, D] features)."""
    found = {}
    for path in feature_paths:
        with ArtifactReader(path, stage="sccam_features") as rd:
            for image_id in rd.image_ids():
                found[image_id] = rd.read(image_id, "feature")["feature"]
    kept = [r for r in records if r.image_id in found]
    if not kept:
        raise ValueError(f"no features in {list(map(str, feature_paths))}: every image was skipped upstream")
    if len(kept) < len(records):
        log.warning("%d of %d images have no feature (skipped upstream, see sccam_features problems)",
                    len(records) - len(kept), len(records))
    return kept, np.stack([found[r.image_id] for r in kept])


def run_clusters(*, manifest_path, feature_paths, classes, cfg: dict, seed: int, round_: int, split: str,
                 code_hash: str, out_path, report_path, picture_path) -> dict:
    """Cluster the round's features; write the sub-categories (HDF5), a report (JSON) and the
    2-D picture (PNG). Returns the report."""
    records, features = read_features(feature_paths, mf.read_tsv(manifest_path))
    present = np.zeros((len(records), len(classes)), bool)
    for i, r in enumerate(records):
        present[i, [v - 1 for v in r.labels]] = True
    log.info("round %d: k-means (k %d) per class on %d features of %d dimensions", round_, cfg["k"],
             len(records), features.shape[1])
    subs = cluster_subcategories(features, present, cfg["k"], seed, cfg["max_iter"], cfg["n_init"], classes)
    if len(records) > 1 and not np.ptp(features, axis=0).any():
        subs.warnings.append(f"round {round_}: the features of all {len(records)} images are identical: the "
                             "classifier they come from has collapsed (its history.json shows the loss); "
                             "the sub-categories are arbitrary")
        log.warning("%s", subs.warnings[-1])
    truth = known_subtypes(records, classes)
    report = {"round": round_, "k": cfg["k"], "images": len(records), "warnings": subs.warnings,
              "sizes": {name: subs.sizes(c).tolist() for c, name in enumerate(classes)},
              "purity": cluster_purity(subs.assign, truth, classes) if truth is not None else None}
    if report["purity"]:
        log.info("cluster purity %.3f, NMI %.3f against the known sub-types",
                 report["purity"]["purity"], report["purity"]["nmi"])
    params = {**cfg, "seed": seed, "round": round_}
    with ArtifactWriter(out_path, stage="sccam_clusters", split=split, shard="all", classes=classes,
                        params=params, code_hash=code_hash) as out:
        for i, r in enumerate(records):
            keys = np.flatnonzero(present[i])
            out.add(r.image_id, keys=(keys + 1).astype(np.uint8), subcategories=subs.assign[i, keys])
        for c, name in enumerate(classes):
            out.add_table(name, {"k": len(subs.centres[c])}, centres=subs.centres[c], sizes=subs.sizes(c))
    xy = embed_2d(features, cfg["embedding"], seed)
    draw_embedding(picture_path, xy, subs, classes, truth,
                   f"SC-CAM round {round_}: {cfg['embedding']} of the features, k = {cfg['k']}")
    write_text(report_path, json.dumps(report, indent=1))
    return report


def read_subcategories(path, classes) -> tuple[int, dict[str, np.ndarray]]:
    """(k, image id -> [C * k] sub-category target vector) from a sccam_clusters artifact."""
    with ArtifactReader(path, stage="sccam_clusters") as rd:
        k = int(rd.params()["k"])
        targets = {}
        for image_id in rd.image_ids():
            got = rd.read(image_id, "keys", "subcategories")
            targets[image_id] = subcategory_target(got["keys"].astype(int) - 1, got["subcategories"], len(classes), k)
    return k, targets
