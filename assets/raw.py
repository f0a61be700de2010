"""Raw layer: landed lines, kept as they arrived."""

import json

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    asset,
    sensor,
)

from assets.partitions import daily_partitions, partition_dates
from assets.publish import bounded, partition_figures, publish, schema_check
from lakehouse.engines.batch import ArrowBatch
from lakehouse.tables.ingest import ingested_rows, landed_days, raw_partitions, unreadable_entries
from lakehouse.tables.quality import volume_drops
from lakehouse.tables.schemas import RAW_EVENTS
from lakehouse.tables.storage import DateRange
from resources.delta import DeltaStorage
from resources.landing import LandingArea


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="raw",
    kinds={"delta", "python"},
    check_specs=[
        schema_check(RAW_EVENTS),
        AssetCheckSpec(
            "raw_events_volume",
            asset="raw_events",
            description=(
                "Warns when an ingest date has 50% or fewer lines than the trailing 7-day mean "
                "(raw keeps them all regardless)."
            ),
        ),
        AssetCheckSpec(
            "raw_events_unread_landing",
            asset="raw_events",
            description=(
                "Warns about what the landing area holds and ingestion does not read: folders that "
                "are not date=YYYY-MM-DD, files that are not .jsonl or .jsonl.gz in the ingested day "
                "folders, gzip files that do not decompress, symbolic links (never followed)."
            ),
        ),
        AssetCheckSpec(
            "raw_events_landing_rewritten",
            asset="raw_events",
            description=(
                "Warns about landed files that broke the landing contract (a file only grows, by "
                "appending lines): files that shrank, vanished or changed under lines already "
                "ingested, with those lines. raw_events keeps the lines as ingested."
            ),
        ),
    ],
)
def raw_events(context: AssetExecutionContext, delta: DeltaStorage, landing: LandingArea):
    """Every line that landed in the landing folder, one row per line, partitioned by ingest date.

    A partition is the day folder the lines were read from, not the day the events happened.
    Nothing is parsed or filtered: broken lines are kept verbatim (a line that is not UTF-8 keeps its
    bytes) so that every later count can be reconciled with what arrived. `.jsonl.gz` files are read
    like `.jsonl` ones; anything else found in the landing area, symbolic links included (never
    followed), is listed by a warning check.
    The landing contract: a landed file only grows, by appending lines. An ingest date holds every
    line ever ingested from its folder, as first read, plus the lines appended since: rerunning a
    date adds appended lines and new files, and is otherwise idempotent. A line that vanished or
    changed after it was ingested (a file truncated, rewritten or deleted) keeps its row, and a
    warning check names its file and lines.
    """
    days = partition_dates(context)
    store = delta.store()
    found = {}

    def compute():
        # Computed from this version of raw_events itself: the commit is refused if another run
        # changed these dates since.
        version = store.version(RAW_EVENTS.name)
        held = store.daily_rows(RAW_EVENTS.name, "ingest_date", version)
        batches, found["rewritten"] = raw_partitions(
            landing.root, days, ingested_rows(store, version, days)
        )
        found["drops"] = volume_drops(held, {day: batch.num_rows for day, batch in batches.items()})
        figures = {
            day: {
                "rows_written": batch.num_rows,
                "rows_appended": batch.num_rows - held.get(day, 0),
                "dagster/row_count": batch.num_rows,
            }
            for day, batch in batches.items()
        }
        partition_figures(
            context,
            "raw_events",
            figures,
            {
                "run_rows_written": MetadataValue.int(
                    sum(batch.num_rows for batch in batches.values())
                ),
                "run_ingest_dates": MetadataValue.int(len(days)),
            },
        )
        return {
            RAW_EVENTS: ArrowBatch(pa.concat_tables(batches.values()))
        }, {} if version is None else {RAW_EVENTS.name: version}

    yield from publish(
        context, store, compute, DateRange("ingest_date", days[0], days[-1]), partitioned=True
    )
    yield AssetCheckResult(
        check_name="raw_events_volume",
        passed=not found["drops"],
        severity=AssetCheckSeverity.WARN,
        metadata={"drops": MetadataValue.json(found["drops"])},
    )
    for check, key, entries in (
        ("raw_events_unread_landing", "unread", unreadable_entries(landing.root, days)),
        ("raw_events_landing_rewritten", "files", found["rewritten"]),
    ):
        yield AssetCheckResult(
            check_name=check,
            passed=not entries,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "entries": MetadataValue.int(len(entries)),
                key: MetadataValue.json(bounded(dict(list(entries.items())[:100]))),
            },
        )


@sensor(
    target=[raw_events],
    default_status=DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description=(
        "Ingests a landing day folder into raw_events when it appears or its files change. "
        "Stopped by default: turn it on for continuous ingestion."
    ),
)
def landing_sensor(context: SensorEvaluationContext, landing: LandingArea):
    """Ingest a landing day folder when it appears or its files change (new lines, late lines).

    Stopped by default: turn it on in the UI (Automation) for continuous ingestion. Its first tick
    requests every landed day, so a data engineer chooses when that happens.
    """
    seen = json.loads(context.cursor) if context.cursor else {}
    partitions = set(daily_partitions.get_partition_keys())
    current = {
        day.isoformat(): signature
        for day, signature in landed_days(landing.root).items()
        if day.isoformat() in partitions
    }
    requests = [
        RunRequest(run_key=f"{day}:{signature}", partition_key=day)
        for day, signature in sorted(current.items())
        if seen.get(day) != signature
    ]
    return SensorResult(run_requests=requests, cursor=json.dumps(current))
