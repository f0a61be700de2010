"""A training set's canonical form and its SHA-256: what a run records and reproduction verifies.

`canonical_training_set` puts a training set in one fixed form (row order, column order, dtypes) so
that the same content always has the same SHA-256, whichever engine produced it and in whatever
order its rows came back. Kept apart from the model code so that `lakehouse reproduce` verifies a
training set without importing scikit-learn or matplotlib.
"""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pyarrow as pa

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
