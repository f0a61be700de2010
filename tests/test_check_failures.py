"""Asset checks that must fail: cleaned_events_accounting and the training set's point-in-time audit.

Each is tested on the plain function that decides pass or fail, on inputs built by hand, and the
accounting check also through Dagster, on a commit that loses a row. (The point-in-time check through
the model asset is in test_reproducible_training.py, which already has a trained lake to run it on.)
"""

import json
import warnings
from datetime import date, datetime, timedelta, timezone

import pandas as pd
import pytest

from lakehouse.ml.leakage import LeakageError, leakage_violations
from lakehouse.tables.quality import unbalanced_days

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def test_accounting_balances_when_cleaned_plus_quarantined_equals_the_raw_rows_of_each_day():
    assert (
        unbalanced_days([D1, D2], {D1: 100, D2: 50}, cleaned={D1: 90, D2: 50}, quarantined={D1: 10})
        == []
    )


@pytest.mark.parametrize(
    "cleaned, quarantined, attributed, gaps",
    [
        # One raw row of 03-02 reached neither table.
        (
            {D1: 90, D2: 50},
            {D1: 10},
            {D1: 100, D2: 51},
            ["2026-03-02: 51 raw rows attributed, 50 in cleaned + quarantine"],
        ),
        # One row too many: 03-01 holds a row no raw line accounts for (a duplicate kept twice, say).
        (
            {D1: 91, D2: 50},
            {D1: 10},
            {D1: 100, D2: 50},
            ["2026-03-01: 100 raw rows attributed, 101 in cleaned + quarantine"],
        ),
        # A whole day of the batch never committed: 0 in the tables.
        (
            {D1: 90},
            {D1: 10},
            {D1: 100, D3: 7},
            ["2026-03-03: 7 raw rows attributed, 0 in cleaned + quarantine"],
        ),
        # A day with rows in the tables and none attributed (the batch's raw rows were dropped before counting).
        (
            {D1: 90, D2: 4},
            {D1: 10},
            {D1: 100},
            ["2026-03-02: 0 raw rows attributed, 4 in cleaned + quarantine"],
        ),
    ],
)
def test_accounting_reports_every_day_that_does_not_balance(cleaned, quarantined, attributed, gaps):
    assert unbalanced_days([D1, D2, D3], attributed, cleaned, quarantined) == gaps


def test_cleaned_events_accounting_fails_through_dagster_when_a_commit_loses_a_row(
    tmp_path, monkeypatch
):
    """raw_events + cleaned_events for one day, materialized in process, with the cleaned commit losing its first row.

    The number of raw lines that belong to the day is counted here from the landed file itself (every
    line of this clean generator setting is valid JSON; a line belongs to the event date of its
    timestamp): that many are attributed, one fewer reach cleaned + quarantine."""
    from dagster import AssetCheckSeverity, materialize

    from assets.raw import raw_events
    from lakehouse.engines.batch import ArrowBatch
    from lakehouse.events.generator import GeneratorConfig, generate
    from lakehouse.events.vocabulary import day_folder
    from resources.delta import DeltaStorage
    from resources.engine import EngineResource
    from resources.landing import LandingArea

    warnings.simplefilter("ignore")
    clean = GeneratorConfig(
        users=100,
        seed=5,
        duplicate_rate=0,
        clock_skew_rate=0,
        late_rate=0,
        missing_field_rate=0,
        anonymous_rate=0,
        malformed_rate=0,
        bom_rate=0,
        drift_from=None,
    )
    generate(tmp_path / "landing", D1, 1, clean)
    lines = (
        (day_folder(tmp_path / "landing", D1) / "events.jsonl")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    on_day = sum(
        datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
        .astimezone(timezone.utc)
        .date()
        == D1
        for line in lines
    )
    assert on_day > 100

    real_commit = ArrowBatch.commit

    def lossy(self, store, schema, *args, **kwargs):
        if schema.name == "cleaned_events":
            self.table = self.table.slice(1)
        return real_commit(self, store, schema, *args, **kwargs)

    monkeypatch.setattr(ArrowBatch, "commit", lossy)
    from assets.cleaned import cleaned_events

    result = materialize(
        [raw_events, cleaned_events],
        resources={
            "delta": DeltaStorage(root=str(tmp_path / "delta")),
            "landing": LandingArea(path=str(tmp_path / "landing")),
            "engine": EngineResource(kind="duckdb"),  # ArrowBatch is the DuckDB engine's batch
        },
        tags={
            "dagster/asset_partition_range_start": D1.isoformat(),
            "dagster/asset_partition_range_end": D1.isoformat(),
        },
        raise_on_error=False,
    )

    assert not result.success  # the check is blocking
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    accounting = checks["cleaned_events_accounting"]
    assert not accounting.passed and accounting.severity == AssetCheckSeverity.ERROR
    assert accounting.metadata["gaps"].value == [
        f"2026-03-01: {on_day} raw rows attributed, {on_day - 1} in cleaned + quarantine"
    ]
    assert accounting.metadata["raw_rows_attributed"].value == on_day
    assert checks["cleaned_events_volume"].passed  # the only failure is the accounting


def _frame(entity_ts, **feature_ts) -> pd.DataFrame:
    return pd.DataFrame(
        {"event_timestamp": entity_ts}
        | {f"{view}__feature_timestamp": ts for view, ts in feature_ts.items()}
    )


UTC = timezone.utc
D = datetime(2026, 3, 2, tzinfo=UTC)  # a label's prediction time: midnight UTC
TTL = timedelta(days=2)


def test_point_in_time_audit_passes_feature_rows_from_the_prediction_time_back_to_the_ttl():
    # Stamped at the prediction time itself (a feature row as of midnight D sums the days before D),
    # one microsecond before it, and exactly TTL before it: all allowed.
    frame = _frame([D, D, D], user_activity=[D, D - timedelta(microseconds=1), D - TTL])
    assert leakage_violations(frame, {"user_activity": TTL}) == {}


def test_point_in_time_audit_counts_future_and_stale_feature_rows_per_view():
    after = D + timedelta(microseconds=1)
    stale = D - TTL - timedelta(microseconds=1)
    frame = _frame(
        [D, D, D, D],
        user_activity=[after, D + timedelta(days=1), D, stale],
        category_activity=[D, D, D, D],
    )
    assert leakage_violations(frame, {"user_activity": TTL, "category_activity": TTL}) == {
        "user_activity": {"rows_with_future_features": 2, "rows_with_features_older_than_ttl": 1},
    }
    # A view without a TTL never goes stale, but its future rows still count.
    assert leakage_violations(frame, {"user_activity": None}) == {
        "user_activity": {"rows_with_future_features": 2, "rows_with_features_older_than_ttl": 0}
    }


def test_point_in_time_audit_compares_instants_not_wall_clocks():
    # 20:00 on 03-01 in New York (UTC-5) is 01:00 UTC on 03-02: one hour after the prediction time,
    # though its wall clock reads the day before. Naive label times are UTC.
    new_york = timezone(timedelta(hours=-5))
    frame = _frame(
        [D.replace(tzinfo=None)], user_activity=[datetime(2026, 3, 1, 20, 0, tzinfo=new_york)]
    )
    assert leakage_violations(frame, {"user_activity": TTL}) == {
        "user_activity": {"rows_with_future_features": 1, "rows_with_features_older_than_ttl": 0}
    }


def test_point_in_time_audit_refuses_a_training_set_without_feature_times():
    with pytest.raises(LeakageError, match="no 'category_activity__feature_timestamp'"):
        leakage_violations(
            _frame([D], user_activity=[D]), {"user_activity": TTL, "category_activity": TTL}
        )
