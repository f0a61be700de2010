"""Freshness of the daily layers: yesterday's partition should exist early each morning (UTC)."""

from dagster import (
    DefaultSensorStatus,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

# raw_events: yesterday's landing day ingested by 04:00; cleaned_events: rebuilt from it by 06:00.
freshness_checks = [
    *build_time_partition_freshness_checks(assets=["raw_events"], deadline_cron="0 4 * * *"),
    *build_time_partition_freshness_checks(assets=["cleaned_events"], deadline_cron="0 6 * * *"),
]

freshness_sensor = build_sensor_for_freshness_checks(
    freshness_checks=freshness_checks,
    minimum_interval_seconds=600,
    default_status=DefaultSensorStatus.RUNNING,
)
