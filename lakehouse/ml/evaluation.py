"""Test-set evaluation of the purchase-propensity model: metrics, figures and feature importance.

Everything here takes held-out labels and probability scores, so it stays independent of how the
model was trained and of Dagster and MLflow; the caller logs the numbers and saves the figures.
Undefined metrics (AUC with one class, precision with nothing flagged) are NaN, never a made-up 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

N_BINS = 10
DECISION_THRESHOLD = 0.5
TOP_SHARE = 0.10
# Test rows each permutation-importance repeat scores: enough for a stable ranking (a few
# thousandths of AUC), bounded so the cost does not grow with the test set.
IMPORTANCE_ROWS = 5_000


def _check(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if len(y) == 0 or len(y) != len(s):
        raise ValueError(
            f"need equally long, non-empty labels and scores (got {len(y)} and {len(s)})"
        )
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0/1")
    # Brier, log loss and calibration only mean something for probabilities.
    if np.isnan(s).any() or s.min() < 0 or s.max() > 1:
        raise ValueError("scores must be probabilities in [0, 1]")
    return y, s


def calibration_bins(y_true, scores, n_bins: int = N_BINS) -> pd.DataFrame:
    """Per non-empty equal-width bin: row count, mean score, observed positive rate.

    Bins are [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]; a score of exactly 1 goes in the last bin.
    Shared by the ECE and the reliability diagram so that the figure shows what the number measures.
    """
    y, s = _check(y_true, scores)
    bin_index = np.minimum((s * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bin_index, "score": s, "label": y})
    return frame.groupby("bin").agg(
        rows=("label", "size"), mean_score=("score", "mean"), positive_rate=("label", "mean")
    )


def expected_calibration_error(y_true, scores, n_bins: int = N_BINS) -> float:
    """Sum over bins of (share of rows in the bin) * |mean score - positive rate|."""
    bins = calibration_bins(y_true, scores, n_bins)
    weights = bins["rows"] / bins["rows"].sum()
    return float((weights * (bins["mean_score"] - bins["positive_rate"]).abs()).sum())


def _precision_recall(y: np.ndarray, flagged: np.ndarray) -> tuple[float, float]:
    true_positives = int((flagged & (y == 1)).sum())
    precision = true_positives / flagged.sum() if flagged.any() else math.nan
    recall = true_positives / (y == 1).sum() if (y == 1).any() else math.nan
    return float(precision), float(recall)


def evaluate(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    y, s = _check(y_true, scores)
    both_classes = len(np.unique(y)) == 2
    # 0.5 says little when positives are rare (few scores reach it), so also report the top decile:
    # "if we contact the 10% most likely buyers, how many buy and what share of buyers do we reach".
    # Exactly ceil(10%) rows are flagged; a stable sort breaks ties by row order, so the result is
    # deterministic for a given (canonically sorted) test set.
    top_k = math.ceil(TOP_SHARE * len(s))
    top = np.zeros(len(s), dtype=bool)
    top[np.argsort(-s, kind="stable")[:top_k]] = True
    precision, recall = _precision_recall(y, s >= DECISION_THRESHOLD)
    top_precision, top_recall = _precision_recall(y, top)
    return {
        "test_auc": float(roc_auc_score(y, s)) if both_classes else math.nan,
        # With no positives, average precision is undefined (sklearn would warn and return 0).
        "test_average_precision": float(average_precision_score(y, s))
        if (y == 1).any()
        else math.nan,
        "test_log_loss": float(log_loss(y, s, labels=[0, 1])),
        "test_brier_score": float(np.mean((s - y) ** 2)),
        "test_expected_calibration_error": expected_calibration_error(y, s),
        "decision_threshold": float(DECISION_THRESHOLD),
        "test_precision": precision,
        "test_recall": recall,
        "test_precision_at_top_10pct": top_precision,
        "test_recall_at_top_10pct": top_recall,
    }


def evaluation_figures(y_true, scores, feature_importance: dict[str, float]) -> dict[str, Figure]:
    """ROC, precision-recall, reliability and feature-importance figures, keyed by file name."""
    y, s = _check(y_true, scores)
    both_classes = len(np.unique(y)) == 2
    base_rate = float(y.mean())
    figures: dict[str, Figure] = {}

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    if both_classes:
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"model (AUC = {roc_auc_score(y, s):.3f})")
    else:  # a figure that says why it is empty beats a failed training run
        ax.text(0.5, 0.6, "ROC undefined: one class only", ha="center")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(
        xlabel="False positive rate",
        ylabel="True positive rate",
        title="ROC curve",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right")
    figures["roc_curve.png"] = fig

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    if (y == 1).any():
        precision, recall, _ = precision_recall_curve(y, s)
        ap = average_precision_score(y, s)
        ax.step(recall, precision, where="post", label=f"model (AP = {ap:.3f})")
    else:
        ax.text(0.5, 0.6, "PR curve undefined: no positives", ha="center")
    # A classifier that flags at random has precision equal to the base rate at every recall.
    ax.axhline(base_rate, linestyle="--", color="grey", label=f"base rate = {base_rate:.3f}")
    ax.set(
        xlabel="Recall",
        ylabel="Precision",
        title="Precision-recall curve",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper right")
    figures["precision_recall_curve.png"] = fig

    fig = Figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    bins = calibration_bins(y, s)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.plot(
        bins["mean_score"],
        bins["positive_rate"],
        marker="o",
        label=f"model (ECE = {expected_calibration_error(y, s):.3f})",
    )
    top.set(
        ylabel="Observed positive rate", title="Calibration (reliability diagram)", ylim=(0, 1.02)
    )
    top.legend(loc="upper left")
    # The histogram shows how many rows stand behind each point: a badly placed but empty bin matters little.
    bottom.hist(s, bins=np.linspace(0, 1, N_BINS + 1), color="tab:blue", edgecolor="white")
    bottom.set(xlabel="Predicted probability", ylabel="Rows", xlim=(0, 1))
    figures["calibration_curve.png"] = fig

    ranked = sorted(feature_importance.items(), key=lambda item: item[1], reverse=True)
    fig = Figure(figsize=(6, 1.5 + 0.35 * max(len(ranked), 1)))
    ax = fig.subplots()
    ax.barh([name for name, _ in ranked], [value for _, value in ranked])
    ax.invert_yaxis()  # most important at the top
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(xlabel="Mean drop in test ROC AUC when shuffled", title="Permutation feature importance")
    fig.tight_layout()
    figures["feature_importance.png"] = fig
    return figures


def permutation_importance_by_auc(
    model,
    X_test: pd.DataFrame,
    y_test,
    repeats: int = 3,
    seed: int = 0,
    max_rows: int = IMPORTANCE_ROWS,
) -> dict[str, float]:
    """Mean drop in test ROC AUC when each feature column is shuffled (model-agnostic: histogram
    gradient boosting has no `feature_importances_`). NaN for every feature if AUC is undefined.

    The cost is features x repeats predictions of the rows scored, so a test set of more than
    `max_rows` rows is scored on a sample of that size, stratified by label (each class keeps its
    share, and at least one row)."""
    y = np.asarray(y_test).astype(int).ravel()
    if len(np.unique(y)) < 2:
        return {str(name): math.nan for name in X_test.columns}
    rows = _stratified_sample(y, max_rows, np.random.default_rng(seed))
    result = permutation_importance(
        model,
        X_test.iloc[rows],
        y[rows],
        scoring="roc_auc",
        n_repeats=repeats,
        random_state=seed,
    )
    return {str(name): float(value) for name, value in zip(X_test.columns, result.importances_mean)}


def _stratified_sample(y: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most about `max_rows` rows of `y`, each label in its share (at least 1)."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    picked = [
        rng.choice(members, size=max(1, round(len(members) * max_rows / len(y))), replace=False)
        for members in (np.flatnonzero(y == label) for label in np.unique(y))
    ]
    return np.sort(np.concatenate(picked))
