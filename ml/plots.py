"""Evaluation plots as matplotlib Figures (Agg backend: no display needed); jobs log them to MLflow."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ml import metrics  # noqa: E402


def roc_figure(y_true, scores: dict[str, np.ndarray]) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in scores.items():
        fpr, tpr = metrics.roc_curve_points(y_true, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.roc_auc(y_true, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on the holdout")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def lift_figure(y_true, scores: dict[str, np.ndarray], points: int = 10) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in scores.items():
        curve = metrics.lift_curve(y_true, s, points)
        ax.plot(curve["fraction"] * 100, curve["lift"], marker="o", label=name)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="top % of customers by score", ylabel="cumulative lift", title="Lift on the holdout")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(table: pd.DataFrame) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 5))
    filled = table[table["rows"] > 0]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.plot(filled["mean_predicted"], filled["observed_rate"], marker="o")
    for _, row in filled.iterrows():
        ax.annotate(str(int(row["rows"])), (row["mean_predicted"], row["observed_rate"]), fontsize=6,
                    textcoords="offset points", xytext=(3, -8))
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", xlim=(0, 1), ylim=(0, 1),
           title="Calibration (rows per bin)")
    fig.tight_layout()
    return fig


def importance_figure(importances: list[tuple[str, float]], top: int = 20) -> Figure:
    items = importances[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.3 * len(items) + 1)))
    ax.barh([n for n, _ in items], [v for _, v in items])
    ax.set(xlabel="importance", title="Feature importance")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def value_deciles_figure(y_true, predictions: dict[str, np.ndarray]) -> Figure:
    """Mean actual vs mean predicted value per decile of each model's prediction."""
    fig, ax = plt.subplots(figsize=(6, 4))
    y = np.asarray(y_true, dtype=float)
    for name, p in predictions.items():
        p = np.asarray(p, dtype=float)
        deciles = pd.qcut(pd.Series(p).rank(method="first"), 10, labels=False)
        frame = pd.DataFrame({"d": deciles, "y": y, "p": p}).groupby("d").mean()
        ax.plot(frame.index + 1, frame["y"], marker="o", label=f"{name}: actual")
        ax.plot(frame.index + 1, frame["p"], linestyle="--", label=f"{name}: predicted")
    ax.set(xlabel="decile of predicted value (10 = highest)", ylabel="mean value (EUR)",
           title="Predicted vs actual value by decile")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
