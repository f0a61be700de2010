import numpy as np
import pandas as pd
import pytest

from lakehouse.ml.fingerprint import canonical_training_set, content_sha256
from lakehouse.ml.training import temporal_split, train_purchase_model

FEATURES = ["purchases_7d", "revenue_30d"]


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"u{i % 10}" for i in range(n)],
            "event_timestamp": pd.to_datetime("2026-03-01") + pd.to_timedelta(np.arange(n) // 10, unit="D"),
            "label": rng.integers(0, 2, n),
            "purchases_7d": rng.integers(0, 5, n),
            "revenue_30d": rng.random(n) * 100,
        }
    )


def test_hash_ignores_row_order_and_engine_dtypes_but_not_content():
    a = canonical_training_set(_frame(), FEATURES)
    shuffled = _frame().sample(frac=1, random_state=3)
    shuffled["event_timestamp"] = shuffled["event_timestamp"].dt.tz_localize("UTC")  # tz-aware vs naive
    shuffled["purchases_7d"] = shuffled["purchases_7d"].astype("float64")  # Spark's int-with-nulls
    b = canonical_training_set(shuffled, FEATURES)
    assert content_sha256(a) == content_sha256(b)
    changed = _frame()
    changed.loc[5, "revenue_30d"] += 0.01
    assert content_sha256(canonical_training_set(changed, FEATURES)) != content_sha256(a)


def test_hash_is_the_known_sha256_of_the_arrow_stream():
    import hashlib
    import io

    import pyarrow as pa

    frame = canonical_training_set(_frame(), FEATURES)
    sink = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert content_sha256(frame) == hashlib.sha256(sink.getvalue()).hexdigest()


# Recorded once from this three-row frame. Every run's lineage holds such a digest, so a change in
# the canonical form or its serialization (a dtype, the column order, pyarrow's IPC layout) must
# show up here before it makes old runs unverifiable.
GOLDEN_SHA256 = "0dd40794742aa73b5331e8934aa904c7907f2fc7a6c1e7d35967b820fbb698f5"


def test_a_fixed_frame_keeps_its_recorded_digest():
    frame = pd.DataFrame(
        {
            "user_id": ["u2", "u1", "u1"],
            "event_timestamp": pd.to_datetime(["2026-03-02", "2026-03-01", "2026-03-02"]),
            "label": [1, 0, 1],
            "purchases_7d": [2, 0, 1],
            "revenue_30d": [19.99, 0.0, 5.5],
        }
    )
    assert content_sha256(canonical_training_set(frame, FEATURES)) == GOLDEN_SHA256


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="revenue_30d"):
        canonical_training_set(_frame().drop(columns=["revenue_30d"]), FEATURES)


def test_temporal_split_trains_on_earlier_times_only():
    frame = canonical_training_set(_frame(), FEATURES)
    train, test, split = temporal_split(frame)
    assert train["event_timestamp"].max() < split <= test["event_timestamp"].min()
    assert len(train) + len(test) == len(frame)


def test_model_learns_a_learnable_signal():
    rng = np.random.default_rng(1)
    n = 4000
    purchases = rng.poisson(1.0, n)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "event_timestamp": pd.to_datetime("2026-03-01") + pd.to_timedelta(np.arange(n) % 20, unit="D"),
            "label": (rng.random(n) < 0.1 + 0.2 * np.minimum(purchases, 4)).astype(int),
            "purchases_7d": purchases,
            "revenue_30d": rng.random(n),
        }
    )
    trained = train_purchase_model(canonical_training_set(frame, FEATURES), FEATURES)
    assert trained.metrics["test_auc"] > 0.7
