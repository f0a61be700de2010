"""Time partitioning shared by the partitioned assets."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone

from dagster import AssetExecutionContext, DailyPartitionsDefinition

from lakehouse.config import lakehouse_paths
from lakehouse.tables.ingest import day_of_folder


def partitions_start() -> date:
    """The first daily partition: LAKEHOUSE_PARTITIONS_START if set, else the first landed day folder,
    else 30 days ago (where `lakehouse generate` starts). Read when the code loads: a day folder
    landed earlier than the start shows up after the next reload."""
    if configured := os.environ.get("LAKEHOUSE_PARTITIONS_START"):
        return date.fromisoformat(configured)
    landed = [
        day
        for folder in lakehouse_paths().landing.glob("date=*")
        if (day := day_of_folder(folder)) is not None
    ]
    return min(landed, default=datetime.now(timezone.utc).date() - timedelta(days=30))


daily_partitions = DailyPartitionsDefinition(start_date=partitions_start().isoformat())


def partition_dates(context: AssetExecutionContext) -> list[date]:
    """The UTC days a (possibly multi-partition, single-run) materialization covers."""
    window = context.partition_time_window
    start: datetime = window.start
    days = (window.end - window.start).days
    return [start.date() + timedelta(days=i) for i in range(days)]
