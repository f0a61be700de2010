"""Feast definitions for the purchase-propensity model: who (entity), where (source), what (views, service).

The sources are the `user_features` and `category_features` Delta tables written by the Dagster
assets of the same names; Feast reads them through the Delta log (lakehouse.features.feast_delta). Paths
are under the lake's one Delta root (lakehouse.config: LAKEHOUSE_DELTA_ROOT, else LAKEHOUSE_DATA_DIR/delta).
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.feature_logging import LoggingConfig
from feast.types import Float64, Int32, Int64, String

from lakehouse.config import lakehouse_paths
from lakehouse.features.feast_delta import DeltaLoggingDestination, DeltaSource

_DELTA_ROOT = lakehouse_paths().delta_root.rstrip("/")

# A person using the app, keyed by the user_id of cleaned_events.
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="An app user.",
    tags={"owner": "ml-platform"},
)
# A product category, keyed like cleaned_events.item_category.
item_category = Entity(
    name="item_category",
    join_keys=["item_category"],
    value_type=ValueType.STRING,
    description="A product category.",
    tags={"owner": "ml-platform"},
)

# One row per (user, as-of midnight); windows end strictly before feature_ts.
user_features_source = DeltaSource(
    name="user_features_delta",
    path=f"{_DELTA_ROOT}/user_features",
    timestamp_field="feature_ts",
    description="Delta table written by the user_features asset.",
)

# Rows are daily, so a row older than 2 days means the pipeline stopped: serve nulls rather than stale counts.
user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(
            name="events_7d", dtype=Int64, description="Events in the 7 days before the as-of time."
        ),
        Field(name="sessions_7d", dtype=Int64, description="Sessions in the 7 days before."),
        Field(name="views_7d", dtype=Int64, description="Product views in the 7 days before."),
        Field(name="carts_7d", dtype=Int64, description="Cart adds in the 7 days before."),
        Field(name="purchases_7d", dtype=Int64, description="Purchases in the 7 days before."),
        Field(name="purchases_30d", dtype=Int64, description="Purchases in the 30 days before."),
        Field(
            name="revenue_30d", dtype=Float64, description="Revenue (USD) in the 30 days before."
        ),
        Field(
            name="days_since_last_event",
            dtype=Int32,
            description="Days since the user's last active day.",
        ),
        Field(name="events_1d", dtype=Int64, description="Events on the day before."),
        Field(name="sessions_1d", dtype=Int64, description="Sessions on the day before."),
        Field(name="purchases_1d", dtype=Int64, description="Purchases on the day before."),
        Field(name="events_30d", dtype=Int64, description="Events in the 30 days before."),
        Field(name="sessions_30d", dtype=Int64, description="Sessions in the 30 days before."),
        Field(name="views_30d", dtype=Int64, description="Product views in the 30 days before."),
        Field(name="carts_30d", dtype=Int64, description="Cart adds in the 30 days before."),
        Field(
            name="cart_abandonment_rate_30d",
            dtype=Float64,
            description="Share of cart sessions in the 30 days before that bought nothing.",
        ),
        Field(
            name="favourite_category_30d",
            dtype=String,
            description="Most viewed category in the 30 days before.",
        ),
        Field(
            name="favourite_category_share_30d",
            dtype=Float64,
            description="Its share of those views.",
        ),
    ],
    source=user_features_source,
    online=True,
    tags={"owner": "ml-platform"},
)

category_features_source = DeltaSource(
    name="category_features_delta",
    path=f"{_DELTA_ROOT}/category_features",
    timestamp_field="feature_ts",
    description="Delta table written by the category_features asset.",
)

# Daily rows too: older than 2 days means the pipeline stopped.
category_activity = FeatureView(
    name="category_activity",
    entities=[item_category],
    ttl=timedelta(days=2),
    schema=[
        Field(
            name="category_views_7d",
            dtype=Int64,
            description="Views in the category in the 7 days before.",
        ),
        Field(
            name="category_carts_7d",
            dtype=Int64,
            description="Cart adds in the category in the 7 days before.",
        ),
        Field(
            name="category_cart_rate_7d",
            dtype=Float64,
            description="category_carts_7d / category_views_7d.",
        ),
    ],
    source=category_features_source,
    online=True,
    tags={"owner": "ml-platform"},
)

# The exact feature sets the model is trained and served on; a new set gets a new version name.
purchase_propensity_v1 = FeatureService(
    name="purchase_propensity_v1",
    features=[
        user_activity[
            [
                "events_7d",
                "sessions_7d",
                "views_7d",
                "carts_7d",
                "purchases_7d",
                "purchases_30d",
                "revenue_30d",
                "days_since_last_event",
            ]
        ]
    ],
    description="Inputs of the first 7-day purchase-propensity model (user activity only).",
    tags={"owner": "ml-platform"},
)

# v2 adds the 1- and 30-day windows, cart abandonment and the user's favourite category's activity:
# the entity rows carry `favourite_category` (training_labels has it), joined to item_category.
purchase_propensity_v2 = FeatureService(
    name="purchase_propensity_v2",
    features=[
        user_activity[
            [f.name for f in user_activity.features if f.name != "favourite_category_30d"]
        ],
        category_activity.with_join_key_map({"item_category": "favourite_category"}),
    ],
    description="Inputs of the 7-day purchase-propensity model: user activity and favourite-category activity.",
    tags={"owner": "ml-platform"},
    # Every online read through this service (feast serve or the SDK) is logged to this Delta table:
    # the traffic the serving-skew check compares the training set with.
    logging_config=LoggingConfig(
        destination=DeltaLoggingDestination(path=f"{_DELTA_ROOT}/served_features"), sample_rate=1.0
    ),
)
