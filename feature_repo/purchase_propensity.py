"""Feast definitions for the purchase-propensity model: who (entity), where (source), what (views, service).

The source is the `user_features` Delta table written by the Dagster asset of the same name; Feast
reads it through the Delta log (lakehouse.feast_delta). Paths follow LAKEHOUSE_DATA_DIR (default: data/ beside this repo).
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.types import Float64, Int32, Int64

from lakehouse.feast_delta import DeltaSource

_DATA_DIR = Path(os.environ.get("LAKEHOUSE_DATA_DIR") or Path(__file__).resolve().parent.parent / "data")

# A person using the app, keyed by the user_id of cleaned_events.
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="An app user.", tags={"owner": "ml-platform"})

# One row per (user, as-of midnight); windows end strictly before feature_ts.
user_features_source = DeltaSource(
    name="user_features_delta",
    path=str(_DATA_DIR / "delta" / "user_features"),
    timestamp_field="feature_ts",
    description="Delta table written by the user_features asset.",
)

# Rows are daily, so a row older than 2 days means the pipeline stopped: serve nulls rather than stale counts.
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="events_7d", dtype=Int64, description="Events in the 7 days before the as-of time."),
        Field(name="sessions_7d", dtype=Int64, description="Sessions in the 7 days before."),
        Field(name="views_7d", dtype=Int64, description="Product views in the 7 days before."),
        Field(name="carts_7d", dtype=Int64, description="Cart adds in the 7 days before."),
        Field(name="purchases_7d", dtype=Int64, description="Purchases in the 7 days before."),
        Field(name="purchases_30d", dtype=Int64, description="Purchases in the 30 days before."),
        Field(name="revenue_30d", dtype=Float64, description="Revenue (USD) in the 30 days before."),
        Field(name="days_since_last_event", dtype=Int32, description="Days since the user's last active day."),
    ],
    source=user_features_source,
    online=True,
    tags={"owner": "ml-platform"},
)

# The exact feature set the model is trained and served on; a new set gets a new version name.
purchase_propensity_v1 = FeatureService(
    name="purchase_propensity_v1",
    features=[user_activity],
    description="Inputs of the 7-day purchase-propensity model.",
    tags={"owner": "ml-platform"},
)
