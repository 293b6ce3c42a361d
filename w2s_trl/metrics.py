"""Pure metric functions (SCIENCE.md 1, 2, 6), tested by value in tests/test_metrics.py."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CELLS = ("K_w&K_s", "K_w&U_s", "U_w&K_s", "U_w&U_s")


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def pair_correct(margins: Sequence[float]) -> np.ndarray:
    """1[r(chosen) - r(rejected) > 0]; a tie (margin exactly 0) counts as wrong."""
    return np.asarray(margins, dtype=float) > 0


def pair_accuracy(margins: Sequence[float]) -> float:
    correct = pair_correct(margins)
    if correct.size == 0:
        raise ValueError("accuracy of an empty set of pairs is undefined")
    return float(correct.mean())


def pgr(acc_student: float, acc_weak: float, acc_ceiling: float | None) -> tuple[float | None, str | None]:
    """Performance gap recovered, or (None, why) when it is undefined."""
    if acc_ceiling is None:
        return None, "no strong ceiling was trained (align.ceiling: false)"
    if acc_ceiling <= acc_weak:
        return None, (
            f"undefined: the strong ceiling ({acc_ceiling:.3f}) does not beat the weak supervisor ({acc_weak:.3f}), "
            "so there is no gap to recover"
        )
    return (acc_student - acc_weak) / (acc_ceiling - acc_weak), None


def knowledge_regions(weak_correct: Sequence[bool], ref_correct: Sequence[bool],
                      models_correct: dict[str, Sequence[bool]]) -> dict[str, dict]:  # fmt: skip
    """The four cells K/U_w x K/U_s with their size and each model's error rate (None in an empty cell)."""
    w = np.asarray(weak_correct, dtype=bool)
    s = np.asarray(ref_correct, dtype=bool)
    masks = {"K_w&K_s": w & s, "K_w&U_s": w & ~s, "U_w&K_s": ~w & s, "U_w&U_s": ~w & ~s}
    out = {}
    for cell, mask in masks.items():
        n = int(mask.sum())
        errors = {}
        for name, correct in models_correct.items():
            c = np.asarray(correct, dtype=bool)
            errors[name] = float((~c[mask]).mean()) if n else None
        out[cell] = {"n": n, "small": n < 10, "error": errors}
    return out


def pair_score_summary(chosen: Sequence[float], rejected: Sequence[float],
                       sections: Sequence[str] | None = None) -> dict:  # fmt: skip
    """RewardBench-style scoring of a reward source on pairs (SCIENCE.md 6): accuracy (ties wrong), tie count, mean
    margin, and per-section accuracy with the macro average over sections (each section counts once; a
    count-weighted average would just be the overall accuracy again)."""
    margins = np.asarray(chosen, dtype=float) - np.asarray(rejected, dtype=float)
    out = {
        "n": int(margins.size),
        "accuracy": pair_accuracy(margins),
        "ties": int((margins == 0).sum()),
        "mean_margin": float(margins.mean()),
    }
    if sections is not None:
        names = np.asarray(sections)
        per = {}
        for name in sorted(set(sections)):
            mask = names == name
            per[name] = {"n": int(mask.sum()), "accuracy": pair_accuracy(margins[mask])}
        out["sections"] = per
        out["macro_accuracy"] = float(np.mean([v["accuracy"] for v in per.values()]))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Paired bootstrap (SCIENCE.md 1): resample test examples with replacement, the SAME resamples for every model and
# statistic, recompute each statistic, take the 2.5/97.5 percentiles. A resample where a statistic is undefined (a PGR
# whose ceiling does not beat the weak model, an empty cell) is dropped and the drop rate reported.


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] example indices drawn with replacement; fixed by the seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def resampled_mean(values: Sequence[float], idx: np.ndarray, mask: Sequence[bool] | None = None) -> np.ndarray:
    """The mean of `values` over the examples in `mask`, in every resample: [resamples], NaN where a resample holds
    no example of the mask."""
    v = np.asarray(values, dtype=float)[idx]
    if mask is None:
        return v.mean(axis=1)
    m = np.asarray(mask, dtype=bool)[idx]
    n = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (v * m).sum(axis=1) / np.maximum(n, 1), np.nan)


def interval(value: float | None, samples: np.ndarray) -> dict:
    """{value, ci: [2.5th, 97.5th percentile of the defined resamples]} (+ the share of resamples dropped)."""
    samples = np.asarray(samples, dtype=float)
    defined = samples[~np.isnan(samples)]
    out = {"value": value, "ci": [float(x) for x in np.percentile(defined, [2.5, 97.5])] if defined.size else None}
    if defined.size < samples.size:
        out["dropped_resamples"] = round(1 - defined.size / samples.size, 4)
    return out


def pgr_samples(student: np.ndarray, weak: np.ndarray, ceiling: np.ndarray) -> np.ndarray:
    """PGR in each resample; NaN (dropped) where the ceiling does not beat the weak model."""
    gap = ceiling - weak
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap > 0, (student - weak) / np.where(gap > 0, gap, 1.0), np.nan)


def cell_error_samples(correct: Sequence[bool], cell: Sequence[bool], idx: np.ndarray) -> np.ndarray:
    """err(S | cell) in each resample: the cell's membership moves with the resampled examples."""
    return resampled_mean(~np.asarray(correct, dtype=bool), idx, cell)


def cluster_resampled_mean(values: Sequence[float], clusters: Sequence[int], idx: np.ndarray,
                           mask: Sequence[bool] | None = None) -> np.ndarray:  # fmt: skip
    """The mean of `values` over the examples in `mask`, in every resample of CLUSTERS (`idx`: [resamples,
    n_clusters] cluster indices drawn with replacement; `clusters[i]`: example i's cluster, 0..n_clusters-1). Examples
    that share something (one sampled completion judged by several rows) move together. NaN where a resample holds no
    example of the mask."""
    v = np.asarray(values, dtype=float)
    m = np.ones(len(v), bool) if mask is None else np.asarray(mask, dtype=bool)
    c = np.asarray(clusters, dtype=int)
    n = idx.shape[1]
    sums = np.bincount(c, weights=np.where(m, v, 0.0), minlength=n)[idx].sum(axis=1)
    counts = np.bincount(c, weights=m.astype(float), minlength=n)[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
