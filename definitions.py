"""The Dagster code location: every asset, check and resource of the lakehouse for one profile."""

from __future__ import annotations

from dagster import Definitions, in_process_executor, load_assets_from_modules

from assets import (
    automation,
    cleaned,
    feature_store,
    features,
    freshness,
    maintenance,
    metrics,
    ml,
    raw,
)
from resources import resources_for

# In-process: one SparkSession serves every step of a run (the multiprocess executor would
# re-import the code and start a JVM per step).
defs = Definitions(
    assets=load_assets_from_modules(
        [raw, cleaned, metrics, features, feature_store, ml, maintenance]
    ),
    resources=resources_for(),
    asset_checks=[*freshness.freshness_checks, feature_store.serving_features_match_training],
    jobs=[maintenance.table_maintenance_job],
    schedules=[maintenance.table_maintenance_schedule],
    sensors=[raw.landing_sensor, automation.late_data_sensor, freshness.freshness_sensor],
    executor=in_process_executor,
)
