import io
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression

from lakehouse.ml.evaluation import (
    evaluate,
    evaluation_figures,
    expected_calibration_error,
    permutation_importance_by_auc,
)

# Ten rows, deliberately not in score order. Positives score 0.93, 0.81, 0.62, 0.42;
# negatives 0.87, 0.58, 0.33, 0.17, 0.12, 0.04. No score sits on a bin edge.
HAND_SCORES = [0.33, 0.93, 0.12, 0.58, 0.81, 0.04, 0.62, 0.87, 0.42, 0.17]
HAND_LABELS = [0, 1, 0, 0, 1, 0, 1, 0, 1, 0]


def test_hand_worked_example():
    m = evaluate(np.array(HAND_LABELS), np.array(HAND_SCORES))

    # AUC = share of (positive, negative) pairs ranked correctly, 4 * 6 = 24 pairs.
    # Negatives below each positive: 0.93 -> 6, 0.81 -> 5 (not 0.87), 0.62 -> 5, 0.42 -> 4 (0.33, 0.17, 0.12, 0.04).
    assert m["test_auc"] == pytest.approx((6 + 5 + 5 + 4) / 24)

    # Ranked by score: 0.93(+) 0.87(-) 0.81(+) 0.62(+) 0.58(-) 0.42(+); AP = mean precision at each positive.
    assert m["test_average_precision"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 4 + 4 / 6) / 4)

    # Brier = mean squared (score - label).
    squares = [
        0.07**2,
        0.19**2,
        0.38**2,
        0.58**2,
        0.87**2,
        0.58**2,
        0.33**2,
        0.17**2,
        0.12**2,
        0.04**2,
    ]
    assert m["test_brier_score"] == pytest.approx(sum(squares) / 10)
    assert m["test_brier_score"] == pytest.approx(0.17689)

    # Log loss = -mean(log of the probability given to the true class).
    true_class_probs = [
        0.93,
        0.81,
        0.62,
        0.42,
        1 - 0.87,
        1 - 0.58,
        1 - 0.33,
        1 - 0.17,
        1 - 0.12,
        1 - 0.04,
    ]
    assert m["test_log_loss"] == pytest.approx(-sum(math.log(p) for p in true_class_probs) / 10)

    # ECE over bins of width 0.1: (rows in bin / 10) * |mean score - positive rate|
    #   bin 9: {0.93+}        -> 1 * 0.07
    #   bin 8: {0.81+, 0.87-} -> 2 * |0.84 - 0.5| = 2 * 0.34
    #   bin 6: {0.62+}        -> 1 * 0.38
    #   bin 5: {0.58-}        -> 1 * 0.58
    #   bin 4: {0.42+}        -> 1 * 0.58
    #   bin 3: {0.33-}        -> 1 * 0.33
    #   bin 1: {0.12-, 0.17-} -> 2 * |0.145 - 0| = 2 * 0.145
    #   bin 0: {0.04-}        -> 1 * 0.04
    # = 2.95 / 10. (Per-row mean |score - label| would be 0.333, unweighted mean over bins 0.308.)
    assert m["test_expected_calibration_error"] == pytest.approx(0.295)

    # Threshold 0.5 flags 0.93+, 0.87-, 0.81+, 0.62+, 0.58-: 3 of 5 flagged are positive, 3 of 4 positives found.
    assert m["decision_threshold"] == 0.5
    assert m["test_precision"] == pytest.approx(3 / 5)
    assert m["test_recall"] == pytest.approx(3 / 4)

    # Top 10% of 10 rows = the single highest score, 0.93, a positive: precision 1/1, recall 1/4.
    assert m["test_precision_at_top_10pct"] == 1.0
    assert m["test_recall_at_top_10pct"] == pytest.approx(1 / 4)

    assert all(type(value) is float for value in m.values())


def test_top_decile_of_twenty_rows_and_ties_broken_by_row_order():
    # 20 rows -> exactly 2 flagged. The two highest scores are 0.9 (negative) and 0.8 (positive).
    scores = np.array([0.1] * 18 + [0.8, 0.9])
    labels = np.array([1, 1] + [0] * 16 + [1, 0])
    m = evaluate(labels, scores)
    assert m["test_precision_at_top_10pct"] == pytest.approx(1 / 2)
    assert m["test_recall_at_top_10pct"] == pytest.approx(1 / 3)

    # All scores tied: the first two rows are flagged (labels 1, 0), whatever ran before.
    tied = evaluate(np.array([1, 0] + [1] * 18), np.full(20, 0.3))
    assert tied["test_precision_at_top_10pct"] == pytest.approx(1 / 2)
    assert tied["test_recall_at_top_10pct"] == pytest.approx(1 / 19)
    # Nothing reaches 0.5: precision is undefined, recall is 0.
    assert math.isnan(tied["test_precision"])
    assert tied["test_recall"] == 0.0


def test_calibrated_scores_have_small_ece_and_squashed_scores_do_not():
    rng = np.random.default_rng(42)
    scores = rng.random(50_000)
    labels = (rng.random(50_000) < scores).astype(
        int
    )  # Bernoulli(score): calibrated by construction
    calibrated = evaluate(labels, scores)["test_expected_calibration_error"]
    squashed = evaluate(labels, scores**3)["test_expected_calibration_error"]
    assert calibrated < 0.02
    # For uniform scores, mean(score - score**3) = 1/2 - 1/4 = 0.25; binning keeps it near that.
    assert squashed > 0.15
    assert expected_calibration_error(labels, scores) == calibrated


@pytest.mark.parametrize("label", [0, 1])
def test_one_class_gives_nan_auc_without_raising(label):
    labels = np.full(12, label)
    scores = np.linspace(0.05, 0.95, 12)
    m = evaluate(labels, scores)
    assert math.isnan(m["test_auc"])
    assert math.isfinite(m["test_log_loss"]) and math.isfinite(m["test_brier_score"])
    figures = evaluation_figures(labels, scores, {"a": 0.0})
    for fig in figures.values():
        fig.savefig(io.BytesIO(), format="png")


def test_rejects_mismatched_or_non_probability_input():
    with pytest.raises(ValueError):
        evaluate(np.array([0, 1]), np.array([0.5]))
    with pytest.raises(ValueError):
        evaluate(np.array([0, 1]), np.array([0.5, 1.5]))
    with pytest.raises(ValueError):
        evaluate(np.array([], dtype=int), np.array([]))


def _signal_and_noise(n, seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * X["a"].to_numpy()))).astype(
        int
    )  # depends on "a" only
    return X, y


def test_permutation_importance_finds_the_signal_feature():
    X_train, y_train = _signal_and_noise(2000, seed=1)
    X_test, y_test = _signal_and_noise(1000, seed=2)
    model = LogisticRegression().fit(X_train, y_train)
    importance = permutation_importance_by_auc(model, X_test, y_test, repeats=3, seed=0)
    assert set(importance) == {"a", "b"}
    # Test AUC is about 0.9 with "a" and 0.5 without it.
    assert importance["a"] > 0.1
    assert abs(importance["b"]) < 0.02
    assert importance == permutation_importance_by_auc(model, X_test, y_test, repeats=3, seed=0)
    assert all(
        math.isnan(v) for v in permutation_importance_by_auc(model, X_test, np.zeros(1000)).values()
    )


class _CountingLogisticRegression(LogisticRegression):
    """Counts the rows it is asked to score (the AUC scorer asks decision_function first)."""

    rows_scored = 0

    def decision_function(self, X):
        self.rows_scored += len(X)
        return super().decision_function(X)

    def predict_proba(self, X):
        self.rows_scored += len(X)
        return super().predict_proba(X)


def test_permutation_importance_on_a_large_test_set_scores_a_bounded_stratified_sample():
    X_train, y_train = _signal_and_noise(2000, seed=1)
    X_test, y_test = _signal_and_noise(40_000, seed=2)
    model = _CountingLogisticRegression().fit(X_train, y_train)
    sampled = permutation_importance_by_auc(model, X_test, y_test, repeats=3, max_rows=4000)
    # 2 features x 3 repeats, plus the unshuffled baseline, each on about 4,000 rows (not 40,000).
    assert 0 < model.rows_scored <= 7 * 4001
    # The whole test set, through scikit-learn directly, gives the same ranking and close values.
    full = permutation_importance(
        model, X_test, y_test, scoring="roc_auc", n_repeats=3, random_state=0
    ).importances_mean
    assert sampled["a"] == pytest.approx(full[0], abs=0.02)
    assert sampled["b"] == pytest.approx(full[1], abs=0.01)
    # Three positives in 40,000 rows: the sample still holds both classes, so AUC stays defined.
    rare = np.zeros(40_000, dtype=int)
    rare[[5, 20_000, 39_999]] = 1
    values = permutation_importance_by_auc(model, X_test, rare, repeats=1, max_rows=4000)
    assert not any(math.isnan(v) for v in values.values())


def test_figures_render_to_png():
    rng = np.random.default_rng(0)
    scores = rng.random(500)
    labels = (rng.random(500) < scores).astype(int)
    figures = evaluation_figures(
        labels, scores, {"revenue_30d": 0.12, "purchases_7d": 0.3, "noise": -0.01}
    )
    assert set(figures) == {
        "roc_curve.png",
        "precision_recall_curve.png",
        "calibration_curve.png",
        "feature_importance.png",
    }
    for fig in figures.values():
        assert isinstance(fig, Figure)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG\r\n\x1a\n")
    # Bars sorted descending, the largest drawn at the top.
    ax = figures["feature_importance.png"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["purchases_7d", "revenue_30d", "noise"]
    assert ax.yaxis_inverted()
