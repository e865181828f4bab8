"""Each row's mean and spread over runs that differ only in their seed, and the papers' claims
judged on them (torch-free, pure functions on the rows' metrics; pipeline/seeds.py reads and
writes the files).

A run's rows are its metric files, results/metrics/<row>.json: `miou` for every row as the
results table scores it (whole images: undecided pixels as background), PRM's instance
metrics under row `prm_instances`. A claim is a difference of two rows (or one value) per
seed, held against the size the paper or the project's issue asks of it: it holds when the
mean over the seeds reaches that size; the table also says in how many seeds it did, and the
verdict says so where the mean and most seeds disagree (a mean carried by one lucky seed).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .summary import aligned, whole_image

# the instance metrics of PRM, kept as one more row of a run
PRM_INSTANCES = "prm_instances"


def row_values(metrics: dict) -> dict:
    """The numbers a row contributes: its mIoU as the results table shows it (and the
    decided-pixel figure where it leaves pixels undecided), or PRM's instance figures."""
    if "map_r" in metrics:
        pairs = metrics.get("same_class_pairs") or {}
        return {"map_r": metrics["map_r"], "two_or_more_matched": pairs.get("two_or_more_matched")}
    if "miou" not in metrics:
        return {}
    shown = whole_image(metrics)
    return {"miou": shown["miou"], "miou_decided": shown.get("miou_decided")}


def mean_sd(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for fewer than two values) of the values given."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def spread_rows(runs: dict[int, dict[str, dict]], metric: str = "miou") -> list[dict]:
    """`runs`: seed -> row -> its values (row_values). One entry per row present in any run,
    in the order rows first appear: mean, sd, min, max over the seeds that have it, and each
    seed's value."""
    order = []
    for rows in runs.values():
        order += [r for r, v in rows.items() if r not in order and v.get(metric) is not None]
    out = []
    for row in order:
        per_seed = {seed: rows[row][metric] for seed, rows in runs.items()
                    if row in rows and rows[row].get(metric) is not None}
        mean, sd = mean_sd(per_seed.values())
        out.append({"row": row, "n_seeds": len(per_seed), "mean": mean, "sd": sd,
                    "min": min(per_seed.values()), "max": max(per_seed.values()), "per_seed": per_seed})
    return out


@dataclass(frozen=True)
class Claim:
    """`minus` empty: the claim is about `row`'s value itself; else about row - minus."""
    method: str
    text: str
    paper: str
    row: str
    minus: str = ""
    metric: str = "miou"
    at_least: float = 0.0
    strict: bool = True  # above (True) or at or above (False) at_least

    def value(self, rows: dict[str, dict]) -> float | None:
        a = (rows.get(self.row) or {}).get(self.metric)
        if not self.minus:
            return a
        b = (rows.get(self.minus) or {}).get(self.metric)
        return None if a is None or b is None else a - b

    def met(self, value: float) -> bool:
        return value > self.at_least if self.strict else value >= self.at_least


# The papers' numbers: ../shared/docs/methods.md (VOC 2012 train, pseudo masks, ImageNet backbones)
# and the papers' tables; the sizes asked for here are those of the issue that lists the claims.
CLAIMS = (
    Claim("AffinityNet", "rw at least 5 points above cam", "+11.7 (CAM 48.0, walk 59.7)", "rw", "cam",
          at_least=0.05, strict=False),
    Claim("SC-CAM", "sccam_r3 above cam", "+2.9 (CAM 50.9 vs 48.0)", "sccam_r3", "cam"),
    Claim("SC-CAM", "sccam_r3 above the same rounds without the sub-category loss (the control, k 0)",
          "(no such control in the paper)", "sccam_r3", "sccam_k0_r3"),
    Claim("SC-CAM", "k = 10 above k = 1 (round 3)", "K = 10 best in its ablation", "sccam_k10_r3", "sccam_k1_r3"),
    Claim("SC-CAM", "k = 10 above k = 5 (round 3)", "K = 10 best in its ablation", "sccam_k10_r3", "sccam_k5_r3"),
    Claim("EPS", "eps above cam", "+21.2 (69.2 vs 48.0)", "eps", "cam"),
    Claim("EPS", "eps_rw above eps", "+1.2 to 2.1 (a reproduction, after segmentation)", "eps_rw", "eps"),
    Claim("MCOF", "RegionNet above the initial seeds (round 1)", "+14.8 (29.1 vs 14.3)",
          "mcof_regionnet_r1", "mcof_seeds"),
    Claim("MCOF", "saliency refinement above RegionNet (round 1)", "+5.7 (34.8 vs 29.1)",
          "mcof_saliency", "mcof_regionnet_r1"),
    Claim("MCOF", "PixelNet above the saliency-refined regions (round 1)", "+13.6 (48.4 vs 34.8)",
          "mcof_pixelnet_r1", "mcof_saliency"),
    Claim("MCOF", "round 2's PixelNet above round 1's", "rises every round", "mcof_pixelnet_r2", "mcof_pixelnet_r1"),
    Claim("MCOF", "MCOF above the self-training control (round 2)", "rises faster (its Fig. 8)",
          "mcof_pixelnet_r2", "selftrain_r2"),
    Claim("PRM", "instance mAP^r at IoU 0.5 at least 15 %", "26.8 (VOC 2012 val)", PRM_INSTANCES,
          metric="map_r", at_least=0.15, strict=False),
    Claim("PRM", "two objects of one class matched as two in at least 30 % of such pairs", "(not reported)",
          PRM_INSTANCES, metric="two_or_more_matched", at_least=0.30, strict=False),
    Claim("DeepLab + CRF", "deeplab_aspp_crf at or above the masks it learned from (segmenter_masks)",
          "segmenters beat their pseudo masks", "deeplab_aspp_crf", "segmenter_masks", strict=False),
)


def verdict_text(mean_met: bool, seeds_met: int, n_seeds: int) -> str:
    """`holds` / `does not hold` on the mean; qualified where the mean and most seeds disagree
    (a mean carried by one seed, or pulled under by one), and under three seeds."""
    if n_seeds < 3:
        seeds = f"{n_seeds} seed{'s' if n_seeds > 1 else ''}"
        return f"{'holds' if mean_met else 'does not hold'} ({seeds}: too few to judge)"
    most_met = 2 * seeds_met > n_seeds
    if mean_met and not most_met:
        return f"holds on the mean only ({seeds_met} of {n_seeds} seeds met it)"
    if most_met and not mean_met:
        return f"does not hold on the mean ({seeds_met} of {n_seeds} seeds met it)"
    return "holds" if mean_met else "does not hold"


def judge(runs: dict[int, dict[str, dict]], claims=CLAIMS) -> list[dict]:
    """Each claim over the seeds: per-seed values, mean, sd, how many seeds met it, and the
    verdict (`not run` where no seed has its rows)."""
    out = []
    for claim in claims:
        per_seed = {seed: v for seed, rows in runs.items() if (v := claim.value(rows)) is not None}
        mean, sd = mean_sd(per_seed.values())
        seeds_met = sum(claim.met(v) for v in per_seed.values())
        verdict = "not run" if mean is None else verdict_text(claim.met(mean), seeds_met, len(per_seed))
        out.append({"method": claim.method, "claim": claim.text, "paper": claim.paper, "n_seeds": len(per_seed),
                    "mean": mean, "sd": sd, "seeds_met": seeds_met,
                    "per_seed": per_seed, "verdict": verdict, "difference": bool(claim.minus)})
    return out


def points(value, signed: bool = False) -> str:
    """A fraction in percentage points (one decimal); empty for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def mean_sd_text(mean, sd, signed: bool = False) -> str:
    if mean is None:
        return ""
    return points(mean, signed) + ("" if sd is None else f" +- {points(sd)}")


def spread_table(rows: list[dict]) -> str:
    cells = [["row", "seeds", "mean +- sd", "min", "max"]]
    cells += [[r["row"], str(r["n_seeds"]), mean_sd_text(r["mean"], r["sd"]), points(r["min"]), points(r["max"])]
              for r in rows]
    return aligned(cells)


def claims_table(judged: list[dict]) -> str:
    cells = [["method", "claim", "paper", "ours (mean +- sd)", "seeds met", "verdict"]]
    for c in judged:
        cells.append([c["method"], c["claim"], c["paper"], mean_sd_text(c["mean"], c["sd"], c["difference"]),
                      f"{c['seeds_met']}/{c['n_seeds']}" if c["n_seeds"] else "", c["verdict"]])
    return aligned(cells)
