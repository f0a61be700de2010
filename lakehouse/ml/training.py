"""The purchase-propensity model, free of Dagster and MLflow.

It trains on a training set in canonical form (`lakehouse.ml.fingerprint`): the labels joined
point-in-time to features, the earlier prediction times for training and the later for testing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from lakehouse.ml.evaluation import evaluate, permutation_importance_by_auc
from lakehouse.ml.fingerprint import LABEL

TEST_SHARE = 0.25  # the share of prediction times, the latest, held out for testing


@dataclass
class TrainedModel:
    model: HistGradientBoostingClassifier
    feature_names: list[str]
    metrics: dict[str, float]
    split_time: pd.Timestamp
    test_labels: np.ndarray
    test_scores: np.ndarray
    importance: dict[str, float]  # mean drop in test AUC when the feature is shuffled


def temporal_split(
    df: pd.DataFrame, test_share: float = TEST_SHARE
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Train on the earlier prediction times, test on the later ones (never a random split)."""
    times = np.sort(df["event_timestamp"].unique())
    if len(times) < 2:
        raise ValueError("need at least two prediction times for a temporal split")
    split_index = min(len(times) - 1, max(1, int(round(len(times) * (1 - test_share)))))
    split_time = pd.Timestamp(times[split_index])
    return (
        df[df["event_timestamp"] < split_time],
        df[df["event_timestamp"] >= split_time],
        split_time,
    )


def train_purchase_model(training_set: pd.DataFrame, feature_names: list[str]) -> TrainedModel:
    # One OpenMP thread: training shares its 2 cores with DuckDB, dbt and other runs, and OpenMP's
    # waiting threads spin; on a busy machine 2 threads fitted 4.6x slower than 1.
    with threadpool_limits(limits=1, user_api="openmp"):
        return _train(training_set, feature_names)


def _train(training_set: pd.DataFrame, feature_names: list[str]) -> TrainedModel:
    train, test, split_time = temporal_split(training_set)
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, random_state=0)
    model.fit(train[feature_names], train[LABEL])
    labels = test[LABEL].to_numpy()
    scores = model.predict_proba(test[feature_names])[:, 1]
    metrics = {
        "train_rows": float(len(train)),
        "test_rows": float(len(test)),
        "test_positive_rate": float(labels.mean()),
    } | evaluate(labels, scores)
    importance = (
        permutation_importance_by_auc(model, test[feature_names], labels)
        if len(np.unique(labels)) == 2
        else {}
    )
    return TrainedModel(model, feature_names, metrics, split_time, labels, scores, importance)
