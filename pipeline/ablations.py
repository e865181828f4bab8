"""The methods' ablation tables, from the metric files of their rows (torch-free: an edit of a
network reruns none of them). Each writes a TSV (fractions 0..1) and returns the same aligned
for the terminal (in percent). Which run a row stands for comes from the plan
(pipeline/plan.py), never from parsing its name."""
from __future__ import annotations

import json
from pathlib import Path

from .plan import SCCAM_CONTROL_K
from .summary import aligned, percent, write_rows

# EPS's railroad and water cases: classes whose context the saliency loss should cut away
# (VOC and the synthetic data name them alike)
CONTEXT_CLASSES = ("train", "boat")


def _load(path) -> dict:
    return json.loads(Path(path).read_text())


def sccam_table(metric_paths, runs: dict[str, tuple[int, int]], out_path) -> str:
    """SC-CAM over k and rounds: `runs` maps each row to its (k, round)."""
    rows = []
    for path in metric_paths:
        m = _load(path)
        k, round_ = runs[m["stage"]]
        purity = (m.get("clusters") or {}).get("purity") or {}
        rows.append({"k": k, "round": round_, "miou": m["miou"], "best_threshold": m["best_threshold"],
                     "purity": purity.get("purity"), "nmi": purity.get("nmi")})
    rows.sort(key=lambda r: (r["k"], r["round"]))
    write_rows(rows, ["k", "round", "miou", "best_threshold", "purity", "nmi"], out_path)

    def cell(v):
        return "" if v is None else f"{v:.4f}"

    def k_cell(k):
        return f"{k} (control)" if k == SCCAM_CONTROL_K else str(k)

    shown = [["k", "round", "CAM mIoU", "threshold", "purity", "NMI"]]
    shown += [[k_cell(r["k"]), str(r["round"]), percent(r["miou"]), cell(r["best_threshold"]), cell(r["purity"]),
               cell(r["nmi"])] for r in rows]
    return aligned(shown)


def _mark_chosen(rows: list[dict], score: str = "miou_train", column: str = "chosen") -> None:
    """`column` = yes on the row with the best `score` (by default the mIoU on the training
    split; none scored: none)."""
    scored = [r for r in rows if r[score] is not None]
    if scored:
        max(scored, key=lambda r: r[score])[column] = "yes"


def eps_table(row_paths, runs: dict[str, tuple[str, float]], cam_path, saliency_paths, out_path,
              train_paths=()) -> str:
    """EPS over tau and saliency source: `runs` maps each row to its (source, tau); the plain
    CAM row and each source's saliency max F are there for reference. `train_paths`: the same
    rows' metrics on the training split, where tau is chosen (column miou_train; `chosen` marks
    each source's best there), so that the tau a config uses is not chosen on the split shown."""
    saliency = {}
    for path in saliency_paths:
        m = _load(path)
        saliency[m.get("source") or m["stage"].removeprefix("saliency_")] = m
    on_train = {m["stage"]: m["miou"] for m in map(_load, train_paths)}
    cam = _load(cam_path)
    context = [c for c in CONTEXT_CLASSES if c in cam["per_class_iou"]]
    rows = [{"row": "cam", "source": "", "tau": None, "miou": cam["miou"], "best_threshold": cam["best_threshold"],
             **{f"iou_{c}": cam["per_class_iou"][c] for c in context}, "saliency_max_f": None, "miou_train": None,
             "chosen": ""}]
    for path in row_paths:
        m = _load(path)
        source, tau = runs[m["stage"]]
        rows.append({"row": m["stage"], "source": source, "tau": float(tau), "miou": m["miou"],
                     "best_threshold": m["best_threshold"], **{f"iou_{c}": m["per_class_iou"][c] for c in context},
                     "saliency_max_f": saliency.get(source, {}).get("max_f"), "miou_train": on_train.get(m["stage"]),
                     "chosen": ""})
    rows[1:] = sorted(rows[1:], key=lambda r: (r["source"], r["tau"]))
    for source in {r["source"] for r in rows[1:]}:
        _mark_chosen([r for r in rows[1:] if r["source"] == source])
    columns = ["row", "source", "tau", "miou", "best_threshold", *(f"iou_{c}" for c in context), "saliency_max_f",
               "miou_train", "chosen"]
    write_rows(rows, columns, out_path)
    cells = [["row", "saliency source", "tau", "mIoU", "threshold", *(f"IoU {c}" for c in context), "saliency max F",
              "mIoU train split", "chosen"]]
    cells += [[r["row"], r["source"], "" if r["tau"] is None else f"{r['tau']:g}", percent(r["miou"]),
               f"{r['best_threshold']:.2f}", *(percent(r[f"iou_{c}"]) for c in context), percent(r["saliency_max_f"]),
               percent(r["miou_train"]), r["chosen"]]
              for r in rows]
    return aligned(cells)


def segmenter_table(row_paths, runs: dict[str, float], out_path, train_paths=(), agreement_paths=()) -> str:
    """The segmenter over learning rates: `runs` maps each row to its rate; `train_paths` the
    same rows' metrics on the training split, where the rate is chosen (`chosen` marks the best
    there), so that the rate a config uses is not chosen on the split shown. `agreement_paths`:
    the rows' agreement with the pseudo masks they learned from (rule evaluate_agreement), a
    choice without ground truth (`chosen_by_agreement`), for when the training split is the one
    reported."""
    on_train = {m["stage"]: m["miou"] for m in map(_load, train_paths)}
    agreement = {m["stage"]: m["miou"] for m in map(_load, agreement_paths)}
    rows = []
    for path in row_paths:
        m = _load(path)
        rows.append({"row": m["stage"], "lr": runs[m["stage"]], "miou": m["miou"],
                     "miou_train": on_train.get(m["stage"]), "chosen": "",
                     "agreement": agreement.get(m["stage"]), "chosen_by_agreement": ""})
    rows.sort(key=lambda r: r["lr"])
    _mark_chosen(rows)
    _mark_chosen(rows, "agreement", "chosen_by_agreement")
    for r in rows:
        r["lr"] = f"{r['lr']:g}"  # as given, not rounded to 4 decimals
    write_rows(rows, ["row", "lr", "miou", "miou_train", "chosen", "agreement", "chosen_by_agreement"], out_path)
    return aligned([["row", "lr", "mIoU", "mIoU train split", "chosen", "agreement with its masks", "chosen by it"]]
                   + [[r["row"], r["lr"], percent(r["miou"]), percent(r["miou_train"]), r["chosen"],
                       percent(r["agreement"]), r["chosen_by_agreement"]] for r in rows])


def metric_rows_table(metric_paths, out_path, columns=("stage", "split", "miou", "miou_full", "coverage",
                                                       "precision", "n_images")) -> str:
    """Rows straight from their metric files, in the given order (MCOF's chain against the
    self-training control)."""
    rows = [_load(p) for p in metric_paths]
    write_rows(rows, columns, out_path)
    shown = ("miou", "miou_full", "coverage", "precision")
    return aligned([list(columns)] + [[percent(r.get(c)) if c in shown else str(r.get(c, "")) for c in columns]
                                      for r in rows])
