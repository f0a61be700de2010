"""Point-in-time audit of a training set: did any row see a feature from its future, or a stale one?

A retrieval with `feature_timestamps=True` carries, per feature view, the event time of the feature
row each entity row received (`<view>__feature_timestamp`). A correct point-in-time join never
gives an entity row a feature row newer than the entity's timestamp, nor one older than the view's
TTL. This check does not trust the join: it recomputes both conditions from the columns.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd


class LeakageError(Exception):
    pass


def leakage_violations(
    frame: pd.DataFrame,
    ttl_by_view: dict[str, timedelta | None],
    entity_timestamp: str = "event_timestamp",
) -> dict[str, dict[str, int]]:
    """Per feature view: rows whose feature row is from after the entity time, or older than the TTL."""
    from lakehouse.features.feast_delta import (
        FEATURE_TIMESTAMP_SUFFIX,
    )  # here: it imports Feast, and Dagster imports this module

    entity_ts = pd.to_datetime(frame[entity_timestamp], utc=True)
    violations = {}
    for view, ttl in ttl_by_view.items():
        column = f"{view}{FEATURE_TIMESTAMP_SUFFIX}"
        if column not in frame.columns:
            raise LeakageError(
                f"training set has no {column!r}: retrieve it with feature_timestamps=True to audit it"
            )
        feature_ts = pd.to_datetime(frame[column], utc=True)
        future = int((feature_ts > entity_ts).sum())
        stale = int((feature_ts < entity_ts - ttl).sum()) if ttl else 0
        if future or stale:
            violations[view] = {
                "rows_with_future_features": future,
                "rows_with_features_older_than_ttl": stale,
            }
    return violations
