"""How late data reaches every table: the automation conditions that `late_data_sensor` evaluates.

A late event lands in a later ingest day's folder. Its event date is rebuilt (cleaned_events reads
ingest dates P..P+3 for event date P), and then everything computed from that date: the dbt metrics
of the same dates, the feature and label tables, the online store, and the model.
"""

from datetime import timedelta

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

# Dagster's any_deps_updated() ignores an update made by a run that also targeted this asset, so
# raw_events D materialized together with cleaned_events D would never rebuild D-3..D-1; these count
# every update (D itself, rebuilt by that same run later than its raw day, stays handled).
_deps_updated_or_requested = AutomationCondition.any_deps_match(
    AutomationCondition.newly_updated() | AutomationCondition.will_be_requested()
).with_label("any_deps_updated_by_any_run")
# Downstream tables wait for their inputs' runs to finish: a rebuild requested in the same tick as
# its input's would run beside it and read the version before it.
_deps_updated = AutomationCondition.any_deps_match(AutomationCondition.newly_updated()).with_label(
    "any_deps_updated_by_any_run"
)
_idle = ~AutomationCondition.any_deps_in_progress() & ~AutomationCondition.in_progress()
# Looks back beyond the latest day: a week, the 3-day late window plus slack for an ingest day
# materialized a few days after it ended. Older dates are rebuilt by backfills.
_recent = AutomationCondition.in_latest_time_window(lookback_delta=timedelta(days=7))

# cleaned_events: rebuild an event date whenever one of its ingest dates is (re)materialized; unlike
# eager(), it does not wait for ingest dates that have not happened yet.
late_window_eager = (_recent & _deps_updated_or_requested.since_last_handled() & _idle).with_label(
    "late_window_eager"
)
# The dbt metrics: rebuild the dates whose cleaned_events partitions were rebuilt.
rebuilt_dates_eager = (_recent & _deps_updated.since_last_handled() & _idle).with_label(
    "rebuilt_dates_eager"
)
# Unpartitioned tables computed from whole inputs: rebuild after any of their inputs changed.
rebuilt_with_its_inputs = (_deps_updated.since_last_handled() & _idle).with_label(
    "rebuilt_with_its_inputs"
)


late_data_sensor = AutomationConditionSensorDefinition(
    "late_data_sensor",
    target=AssetSelection.assets("cleaned_events", "quarantined_events").downstream(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Rebuilds the event dates whose ingest dates changed, then every table computed from them: "
    "the dbt metrics of those dates, the feature and label tables, the online store and the model.",
)
