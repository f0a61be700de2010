"""Training sets and the purchase-propensity model, free of Dagster and MLflow.

A training set is the labels joined point-in-time to features. `canonical_training_set` puts it in
one fixed form (row order, column order, dtypes) so that the same content always has the same
SHA-256, whichever engine produced it and in whatever order its rows came back.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.ensemble import HistGradientBoostingClassifier

from lakehouse.ml.evaluation import evaluate, permutation_importance_by_auc

ENTITY_COLUMNS = ["user_id", "event_timestamp"]
LABEL = "label"


def canonical_training_set(df: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """Entity columns, label, then features in service order; sorted by (event_timestamp, user_id).

    Timestamps become UTC microseconds and features float64 (an integer feature with nulls comes back
    as float from some engines; one dtype for all keeps the hash stable).
    """
    missing = [c for c in ENTITY_COLUMNS + [LABEL] + feature_names if c not in df.columns]
    if missing:
        raise ValueError(f"training set lacks columns {missing}")
    ts = pd.to_datetime(df["event_timestamp"])
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(str).to_numpy(),
            "event_timestamp": ts.astype("datetime64[us, UTC]").to_numpy(),
            LABEL: df[LABEL].astype("int64").to_numpy(),
        }
    )
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[us, UTC]")
    for name in feature_names:
        out[name] = df[name].astype("float64").to_numpy()
    return out.sort_values(["event_timestamp", "user_id"], kind="stable").reset_index(drop=True)


def content_sha256(df: pd.DataFrame) -> str:
    """SHA-256 of the full content: Arrow IPC bytes of the frame, without pandas metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(None).combine_chunks()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


@dataclass
class TrainedModel:
    model: HistGradientBoostingClassifier
    feature_names: list[str]
    metrics: dict[str, float]
    split_time: pd.Timestamp
    test_labels: np.ndarray
    test_scores: np.ndarray
    importance: dict[str, float]  # mean drop in test AUC when the feature is shuffled


def temporal_split(df: pd.DataFrame, test_share: float = 0.25) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Train on the earlier prediction times, test on the later ones (never a random split)."""
    times = np.sort(df["event_timestamp"].unique())
    if len(times) < 2:
        raise ValueError("need at least two prediction times for a temporal split")
    split_index = min(len(times) - 1, max(1, int(round(len(times) * (1 - test_share)))))
    split_time = pd.Timestamp(times[split_index])
    return df[df["event_timestamp"] < split_time], df[df["event_timestamp"] >= split_time], split_time


def train_purchase_model(training_set: pd.DataFrame, feature_names: list[str]) -> TrainedModel:
    train, test, split_time = temporal_split(training_set)
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, random_state=0)
    model.fit(train[feature_names], train[LABEL])
    labels = test[LABEL].to_numpy()
    scores = model.predict_proba(test[feature_names])[:, 1]
    metrics = {"train_rows": float(len(train)), "test_rows": float(len(test)), "test_positive_rate": float(labels.mean())} | evaluate(labels, scores)
    importance = permutation_importance_by_auc(model, test[feature_names], labels) if len(np.unique(labels)) == 2 else {}
    return TrainedModel(model, feature_names, metrics, split_time, labels, scores, importance)
