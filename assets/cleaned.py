"""Cleaned layer: one canonical row per event, and a quarantine for every line that is not one."""

from collections import Counter
from datetime import date

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    multi_asset,
)

from assets.automation import late_window_eager
from assets.partitions import daily_partitions, partition_dates
from assets.publish import (
    RECOMPUTE_ATTEMPTS,
    delta_metadata,
    partition_figures,
    schema_check,
    schema_check_result,
)
from lakehouse.events.vocabulary import MAX_LATENESS
from lakehouse.tables.publication import (
    PublishedPair,
    new_batch_id,
    publish_pair,
    published_quarantine,
    unpublished_lines,
)
from lakehouse.tables.quality import unbalanced_days, volume_drops
from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE
from lakehouse.tables.storage import DateRange, DeltaStore, StaleInputError
from lakehouse.transforms.cleaning import clean_events
from resources.delta import DeltaStorage
from resources.engine import EngineResource

# Event date P can arrive up to MAX_LATENESS later, so it is rebuilt from ingest dates P .. P + 3 (identity
# ties are also read from the 30 days before, as far as they are ingested; they do not gate the rebuild).
LATE_WINDOW = TimeWindowPartitionMapping(
    start_offset=0, end_offset=MAX_LATENESS.days, allow_nonexistent_upstream_partitions=True
)
_raw_dep = AssetDep("raw_events", partition_mapping=LATE_WINDOW)


def _daily_spec(schema) -> AssetSpec:
    return AssetSpec(
        schema.name,
        deps=[_raw_dep],
        partitions_def=daily_partitions,
        group_name="cleaned",
        kinds={"delta", "pyspark"},
        automation_condition=late_window_eager,
        description=schema.description,
    )


@multi_asset(
    specs=[_daily_spec(CLEANED_EVENTS), _daily_spec(QUARANTINE)],
    check_specs=[
        schema_check(CLEANED_EVENTS),
        schema_check(QUARANTINE),
        AssetCheckSpec(
            "cleaned_events_volume",
            asset="cleaned_events",
            blocking=True,
            description=(
                "No event date of the batch falls to 50% or less of the trailing 7-day mean; "
                "otherwise nothing is committed."
            ),
        ),
        AssetCheckSpec(
            "cleaned_events_unpublished_lines",
            asset="cleaned_events",
            description=(
                "Warns when raw lines the run read belong to event dates whose published rows do not "
                "hold them yet (late lines of dates before the run's range, lines of dates after it), "
                "and names those dates and the command that publishes them."
            ),
        ),
        AssetCheckSpec(
            "cleaned_events_accounting",
            asset="cleaned_events",
            blocking=True,
            description=(
                "For every event date: raw lines attributed to it = cleaned rows + quarantined rows "
                "(duplicates included), read back after the commit."
            ),
        ),
    ],
    backfill_policy=BackfillPolicy.single_run(),
    can_subset=False,
)
def cleaned_events(context: AssetExecutionContext, delta: DeltaStorage, engine: EngineResource):
    """App events in the canonical schema, partitioned by event date, and their quarantine.

    cleaned_events: one row per event_id, with the event time corrected for device clock skew
    (received_at - (sent_at - timestamp)), drifted price fields mapped to price_usd, and pre-login
    events attributed to the user the device logged in as. quarantined_events: every other raw line
    with a reason code (malformed, unknown event, bad timestamp, wrong type, negative price, ...,
    duplicate). An event date is rebuilt from the ingest dates it can arrive on (the 3-day late
    window) and replaced whole, so reruns are idempotent and late events reach their own date.
    Write-audit-publish: both batches pass their schemas and the volume rule before anything is
    committed, and the pair is published atomically for readers (lakehouse/tables/publication.py:
    read quarantined_events through `published_quarantine`). Both commits record the raw_events
    version they were computed from; a run whose commit finds dates already computed from a newer
    raw_events version computes again from it. Limits: identities are stitched with the logins seen from 30
    days before to 3 days after an event; deliveries more than 3 days late are not picked up.
    """
    days = partition_dates(context)
    store, runner = delta.store(), engine.engine()
    replace = DateRange("event_date", days[0], days[-1])
    for attempt in range(1, RECOMPUTE_ATTEMPTS + 1):
        inputs = {"raw_events": store.version("raw_events")}
        batch_id = new_batch_id()
        with runner.persisting() as persist:
            result = clean_events(
                runner.read(store, "raw_events", inputs["raw_events"]),
                days[0],
                days[-1],
                persist,
                batch_id,
            )
            cleaned, quarantined = runner.batch(result.cleaned), runner.batch(result.quarantined)
            try:
                reports = [cleaned.validate(CLEANED_EVENTS), quarantined.validate(QUARANTINE)]
                batch_days = {day: 0 for day in days} | result.cleaned_by_event_date()
                drops = volume_drops(
                    store.daily_rows(CLEANED_EVENTS.name, "event_date"), batch_days
                )
                volume = AssetCheckResult(
                    asset_key="cleaned_events",
                    check_name="cleaned_events_volume",
                    passed=not drops,
                    metadata={
                        "failures": MetadataValue.json(drops),
                        "rows_by_event_date": MetadataValue.json(
                            {str(d): n for d, n in sorted(batch_days.items())}
                        ),
                    },
                )
                if not all(report.passed for report in reports) or drops:
                    yield schema_check_result(CLEANED_EVENTS, reports[0])
                    yield schema_check_result(QUARANTINE, reports[1])
                    yield volume
                    for report in reports:
                        report.raise_if_failed()
                    raise VolumeDropError(
                        f"cleaned_events batch {days[0]}..{days[-1]} not committed: "
                        + "; ".join(drops)
                    )
                try:
                    published = publish_pair(store, cleaned, quarantined, replace, inputs, batch_id)
                except StaleInputError as exc:
                    context.log.warning(
                        f"attempt {attempt}: {exc}. Computing again from raw_events v{store.version('raw_events')}."
                    )
                    continue
                yield schema_check_result(CLEANED_EVENTS, reports[0])
                yield schema_check_result(QUARANTINE, reports[1])
                yield volume
                yield from _after_publication(
                    context,
                    store,
                    days,
                    result,
                    reports,
                    batch_days,
                    published,
                    inputs,
                    batch_id,
                    cleaned,
                    quarantined,
                )
                return
            finally:
                cleaned.release()
                quarantined.release()
    raise StaleInputError(
        f"cleaned_events {days[0]}..{days[-1]}: raw_events kept moving ahead of "
        f"{RECOMPUTE_ATTEMPTS} computations; run it again"
    )


def _after_publication(
    context,
    store,
    days,
    result,
    reports,
    batch_days,
    published,
    inputs,
    batch_id,
    cleaned,
    quarantined,
):
    """The checks read back after the commit, and the figures and metadata of both assets."""
    cleaned_version, quarantine_version = published.cleaned_version, published.quarantine_version
    attributed, counts, by_reason = (
        result.rows_by_event_date(),
        result.counts(),
        result.quarantined_by_reason(),
    )
    gaps = accounting_gaps(store, days, attributed, published)
    yield AssetCheckResult(
        asset_key="cleaned_events",
        check_name="cleaned_events_accounting",
        passed=not gaps,
        metadata={
            "gaps": MetadataValue.json(gaps),
            "raw_rows_attributed": MetadataValue.int(sum(attributed.values())),
        },
    )
    behind = unpublished_lines(store, result.outside_range_by_dates(), inputs["raw_events"])
    # A date before the first partition has no partition to publish into: counted, not a failure of this run.
    first_partition = daily_partitions.start.date()
    outside = {day: n for day, n in behind.items() if day < first_partition}
    behind = {day: n for day, n in behind.items() if day >= first_partition}
    yield AssetCheckResult(
        asset_key="cleaned_events",
        check_name="cleaned_events_unpublished_lines",
        passed=not behind,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "lines_by_event_date": MetadataValue.json({str(d): n for d, n in behind.items()}),
            "publish_them_with": MetadataValue.text(
                publish_command(list(behind)) if behind else "nothing to publish"
            ),
            "lines_before_the_first_partition": MetadataValue.json(
                {str(d): n for d, n in outside.items()}
            ),
            "first_partition": MetadataValue.text(
                f"{first_partition} (LAKEHOUSE_PARTITIONS_START, else the first landed day): "
                "dates before it have no partition"
            ),
        },
    )
    quarantined_by_day = {day: attributed.get(day, 0) - batch_days[day] for day in days}
    partition_figures(
        context,
        "cleaned_events",
        {
            day: {
                "rows_written": batch_days[day],
                "dagster/row_count": batch_days[day],
                "quarantined": quarantined_by_day[day],
                "raw_rows_attributed": attributed.get(day, 0),
            }
            for day in days
        },
        {
            "run_rows_written": MetadataValue.int(reports[0].rows),
            "run_raw_rows_read": MetadataValue.int(sum(counts.values())),
            "run_raw_rows_attributed": MetadataValue.int(sum(attributed.values())),
            "raw_rows_read_vs_attributed": MetadataValue.text(RAW_ROWS_NOTE),
        },
    )
    partition_figures(
        context,
        "quarantined_events",
        {day: {"rows_written": n, "dagster/row_count": n} for day, n in quarantined_by_day.items()},
        {
            "run_rows_written": MetadataValue.int(reports[1].rows),
            "run_rows_by_reason": MetadataValue.json(by_reason),
        },
    )
    publication_metadata = {
        "batch_id": MetadataValue.text(batch_id),
        "cleaned_events_version": MetadataValue.int(cleaned_version),
    }
    yield MaterializeResult(
        asset_key="quarantined_events",
        metadata=delta_metadata(
            store, QUARANTINE, quarantine_version, None, quarantined.preview().to_pandas(), inputs
        )
        | publication_metadata,
    )
    yield MaterializeResult(
        asset_key="cleaned_events",
        metadata=delta_metadata(
            store, CLEANED_EVENTS, cleaned_version, None, cleaned.preview().to_pandas(), inputs
        )
        | publication_metadata,
    )


def publish_command(days: list[date]) -> str:
    """The command that publishes lines of `days` that no table holds yet, and rebuilds what is downstream of them."""
    return (
        "dagster asset materialize -f definitions.py --select 'cleaned_events*,quarantined_events' "
        f"--partition-range {min(days).isoformat()}...{max(days).isoformat()}"
    )


RAW_ROWS_NOTE = (
    "raw_rows_read counts every raw row of the ingest window the run read: ingest dates from 30 days before "
    "the range (for identity ties) to 3 days after it (for late events). raw_rows_attributed counts the rows "
    "whose event date is in the range: cleaned + quarantined. The others belong to other event dates."
)


class VolumeDropError(Exception):
    pass


def accounting_gaps(
    store: DeltaStore, days: list[date], attributed: dict[date, int], published: PublishedPair
) -> list[str]:
    """Event dates whose raw lines do not all appear, once, in the pair this run published.

    Read at the versions the run's own commits made: a run that publishes some of the same dates a
    moment later settles the quarantine, which changes its newest version, not those.
    """
    cleaned = store.daily_rows(CLEANED_EVENTS.name, "event_date", published.cleaned_version)
    quarantined = Counter(
        published_quarantine(
            store,
            days[0],
            days[-1],
            published.cleaned_version,
            columns=["event_date"],
            quarantine_version=published.batch_version,
        )
        .column("event_date")
        .to_pylist()
    )
    return unbalanced_days(days, attributed, cleaned, quarantined)
