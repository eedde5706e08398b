"""Model-quality metrics on plain arrays (numpy): classification, value regression and top-N ranking.

The Spark jobs collect (label, score) columns of a holdout to the driver and call these; a few million
rows of two doubles fit easily. Every metric is defined here once, so models, baselines and the
champion are measured by the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr


def _as_arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.shape[0]}) and scores ({s.shape[0]}) differ in length")
    if y.size == 0:
        raise ValueError("no rows to evaluate")
    return y, s


# --------------------------------------------------------------------------------------------------
# binary classification (churn)
# --------------------------------------------------------------------------------------------------

def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve via the rank-sum (Mann-Whitney U) statistic; ties count one half."""
    y, s = _as_arrays(y_true, y_score)
    n_pos = float((y == 1).sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks: ties get half credit
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_auc(y_true, y_score) -> float:
    """Average precision: sum over positives of precision at that positive's threshold / #positives.

    Tied scores are treated as one threshold (all tied rows enter together), so the value does not
    depend on the input order.
    """
    y, s = _as_arrays(y_true, y_score)
    n_pos = (y == 1).sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # the last index of each block of equal scores
    distinct = np.where(np.diff(s_sorted))[0]
    ends = np.r_[distinct, y_sorted.size - 1]
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def _top_fraction_mask(s: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ceil(fraction*n) highest scores (stable: earlier rows win ties)."""
    k = max(1, int(np.ceil(fraction * s.size)))
    order = np.argsort(-s, kind="mergesort")
    mask = np.zeros(s.size, dtype=bool)
    mask[order[:k]] = True
    return mask


def lift_at(y_true, y_score, fraction: float = 0.1) -> float:
    """Positive rate among the top `fraction` by score divided by the overall positive rate."""
    y, s = _as_arrays(y_true, y_score)
    base = y.mean()
    if base == 0:
        return float("nan")
    return float(y[_top_fraction_mask(s, fraction)].mean() / base)


def capture_at(y_true, y_score, fraction: float = 0.1) -> float:
    """Share of all positives (or of the total, for non-negative values) found in the top `fraction`."""
    y, s = _as_arrays(y_true, y_score)
    total = y.sum()
    if total == 0:
        return float("nan")
    return float(y[_top_fraction_mask(s, fraction)].sum() / total)


def brier_score(y_true, y_prob) -> float:
    """Mean squared difference between predicted probability and the 0/1 outcome (lower is better)."""
    y, p = _as_arrays(y_true, y_prob)
    return float(np.mean((p - y) ** 2))


def calibration_table(y_true, y_prob, bins: int = 10) -> pd.DataFrame:
    """Equal-width probability bins: rows, mean predicted probability and observed rate per bin."""
    y, p = _as_arrays(y_true, y_prob)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows = []
    for b in range(bins):
        in_bin = idx == b
        n = int(in_bin.sum())
        rows.append({
            "bin": b,
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "rows": n,
            "mean_predicted": float(p[in_bin].mean()) if n else float("nan"),
            "observed_rate": float(y[in_bin].mean()) if n else float("nan"),
        })
    return pd.DataFrame(rows)


def expected_calibration_error(y_true, y_prob, bins: int = 10) -> float:
    """Row-weighted mean |observed - predicted| over the calibration bins."""
    table = calibration_table(y_true, y_prob, bins).query("rows > 0")
    weights = table["rows"] / table["rows"].sum()
    return float((weights * (table["observed_rate"] - table["mean_predicted"]).abs()).sum())


def roc_curve_points(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, starting at (0, 0)."""
    y, s = _as_arrays(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    ends = np.r_[np.where(np.diff(s_sorted))[0], y_sorted.size - 1]
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    n_pos, n_neg = max(y.sum(), 1), max(y.size - y.sum(), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def lift_curve(y_true, y_score, points: int = 10) -> pd.DataFrame:
    """Cumulative lift and capture at each decile (or `points` quantiles) of the score ranking."""
    rows = []
    for i in range(1, points + 1):
        f = i / points
        rows.append({"fraction": f, "lift": lift_at(y_true, y_score, f), "capture": capture_at(y_true, y_score, f)})
    return pd.DataFrame(rows)


def classification_metrics(y_true, y_prob) -> dict[str, float]:
    """The churn report: ROC AUC, PR AUC, top-decile lift and capture, Brier score, ECE, base rate."""
    y, p = _as_arrays(y_true, y_prob)
    return {
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "lift_top_decile": lift_at(y, p, 0.1),
        "capture_top_decile": capture_at(y, p, 0.1),
        "brier": brier_score(y, p),
        "ece": expected_calibration_error(y, p),
        "base_rate": float(y.mean()),
        "rows": float(y.size),
    }


# --------------------------------------------------------------------------------------------------
# value regression (CLV)
# --------------------------------------------------------------------------------------------------

def mae(y_true, y_pred) -> float:
    y, p = _as_arrays(y_true, y_pred)
    return float(np.mean(np.abs(p - y)))


def rmse(y_true, y_pred) -> float:
    y, p = _as_arrays(y_true, y_pred)
    return float(np.sqrt(np.mean((p - y) ** 2)))


def aggregate_error_pct(y_true, y_pred) -> float:
    """(sum predicted - sum actual) / sum actual * 100: does the model get the total right?"""
    y, p = _as_arrays(y_true, y_pred)
    total = y.sum()
    if total == 0:
        return float("nan")
    return float((p.sum() - total) / total * 100.0)


def spearman(y_true, y_pred) -> float:
    """Rank correlation between predicted and actual value (how well customers are ordered)."""
    y, p = _as_arrays(y_true, y_pred)
    if np.all(y == y[0]) or np.all(p == p[0]):
        return float("nan")
    return float(spearmanr(y, p).statistic)


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """The CLV report: MAE, RMSE, aggregate error %, Spearman, revenue captured by the top decile."""
    y, p = _as_arrays(y_true, y_pred)
    return {
        "mae": mae(y, p),
        "rmse": rmse(y, p),
        "aggregate_error_pct": aggregate_error_pct(y, p),
        "spearman": spearman(y, p),
        "top_decile_capture": capture_at(y, p, 0.1),
        "actual_mean": float(y.mean()),
        "predicted_mean": float(p.mean()),
        "rows": float(y.size),
    }


# --------------------------------------------------------------------------------------------------
# top-N ranking (recommender)
# --------------------------------------------------------------------------------------------------

def precision_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    """Share of the first k recommendations that are relevant (divides by k even if fewer were given)."""
    rel = set(relevant)
    return sum(1 for item in list(recommended)[:k] if item in rel) / k


def recall_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    """Share of the relevant items found in the first k recommendations."""
    rel = set(relevant)
    if not rel:
        return float("nan")
    return sum(1 for item in list(recommended)[:k] if item in rel) / len(rel)


def ndcg_at_k(recommended: Sequence, relevant: Iterable, k: int) -> float:
    """Binary-relevance NDCG: sum 1/log2(rank+1) over hits, divided by the ideal for min(k, #relevant)."""
    rel = set(relevant)
    if not rel:
        return float("nan")
    dcg = sum(1.0 / np.log2(i + 2) for i, item in enumerate(list(recommended)[:k]) if item in rel)
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(rel))))
    return float(dcg / ideal)


def ranking_metrics(recommendations: Mapping, relevant: Mapping, k: int, catalog_size: int | None = None
                    ) -> dict[str, float]:
    """Means of precision/recall/NDCG@k over users with at least one relevant item, plus catalog coverage.

    `recommendations` and `relevant` map user -> list (ranked) / collection of items. Users with relevant
    items but no recommendations count as all misses. Coverage is the share of the catalog recommended
    to anyone (in the first k), when `catalog_size` is given.
    """
    users = [u for u, items in relevant.items() if len(items) > 0]
    if not users:
        raise ValueError("no user has a relevant item in the holdout")
    precision = [precision_at_k(recommendations.get(u, []), relevant[u], k) for u in users]
    recall = [recall_at_k(recommendations.get(u, []), relevant[u], k) for u in users]
    ndcg = [ndcg_at_k(recommendations.get(u, []), relevant[u], k) for u in users]
    out = {
        f"precision_at_{k}": float(np.mean(precision)),
        f"recall_at_{k}": float(np.mean(recall)),
        f"ndcg_at_{k}": float(np.mean(ndcg)),
        "users_evaluated": float(len(users)),
    }
    if catalog_size:
        out["catalog_coverage"] = catalog_coverage(recommendations, catalog_size, k)
    return out


def catalog_coverage(recommendations: Mapping, catalog_size: int, k: int | None = None) -> float:
    """Distinct items recommended (first k per user) / catalog size."""
    if catalog_size <= 0:
        return float("nan")
    seen = set()
    for items in recommendations.values():
        seen.update(list(items)[:k] if k else items)
    return len(seen) / catalog_size
