"""Cleaned layer: one canonical, deduplicated row per event."""

from dagster import AssetExecutionContext, BackfillPolicy, MetadataValue, asset

from assets.partitions import daily_partitions, partition_dates
from assets.publish import publish_spark, schema_check
from lakehouse.schemas import CLEANED_EVENTS
from lakehouse.storage import DateRange
from lakehouse.transforms.cleaning import clean_events
from resources.delta import DeltaStorage
from resources.spark import SparkResource


@asset(
    deps=["raw_events"],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="cleaned",
    kinds={"delta", "spark"},
    check_specs=[schema_check(CLEANED_EVENTS)],
)
def cleaned_events(context: AssetExecutionContext, delta: DeltaStorage, spark: SparkResource):
    """App events in the canonical schema: one row per event_id, event times in UTC, partitioned by event date.

    Each raw line is parsed as an event; lines that are not valid events (broken JSON, no id, unknown
    event name or platform, unreadable timestamp) are left out and counted by reason. When an event
    was delivered more than once, its first delivery (earliest ingest date, then file and line) is kept.
    Limits: events are assumed to land on the day they happen (late arrival is not handled yet).
    """
    days = partition_dates(context)
    store = delta.store()
    raw = store.read_spark(spark.session(), "raw_events")
    raw = raw.where(raw.ingest_date.between(days[0], days[-1]))
    result = clean_events(raw, days[0], days[-1]).persisted()
    try:
        counts = result.counts()
        accounting = {
            "raw_rows": MetadataValue.int(sum(counts.values())),
            "duplicates_dropped": MetadataValue.int(counts["duplicate"]),
            "rejected": MetadataValue.int(counts["rejected"]),
            "rejected_by_reason": MetadataValue.json(result.rejected_by_reason()),
            "outside_range": MetadataValue.int(counts["outside_range"]),
        }
        yield from publish_spark(store, CLEANED_EVENTS, result.cleaned, DateRange("event_date", days[0], days[-1]), extra=accounting)
    finally:
        result.classified.unpersist()
