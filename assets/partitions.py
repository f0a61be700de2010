"""Time partitioning shared by the partitioned assets."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta

from dagster import AssetExecutionContext, DailyPartitionsDefinition

# The first day a partition can exist for; LAKEHOUSE_PARTITIONS_START moves it for older data.
daily_partitions = DailyPartitionsDefinition(start_date=os.environ.get("LAKEHOUSE_PARTITIONS_START", "2026-01-01"))


def partition_dates(context: AssetExecutionContext) -> list[date]:
    """The UTC days a (possibly multi-partition, single-run) materialization covers."""
    window = context.partition_time_window
    start: datetime = window.start
    days = (window.end - window.start).days
    return [start.date() + timedelta(days=i) for i in range(days)]
