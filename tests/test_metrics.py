"""The dbt metrics on a small hand-built cleaned_events table, against answers worked out by hand.

Runs the real dbt project (dbt-duckdb, the delta_source and delta_writer plugins) with
LAKEHOUSE_DATA_DIR pointing at a temporary folder, and reads the Delta tables it lands.
"""

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse.tables.schemas import CLEANED_EVENTS
from lakehouse.tables.storage import DeltaStore
from resources.dbt import DBT_DIR

pytestmark = pytest.mark.slow  # each test runs dbt
DBT = str(Path(sys.executable).parent / "dbt")
D1, D2, D3 = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 9)  # Monday, Tuesday, next Monday


def _event(
    n, user, name, when, platform, identity="logged_in", variant=None, order=None, revenue=None
):
    ts = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
    row = dict.fromkeys(CLEANED_EVENTS.column_names)
    row |= {
        "event_id": f"ev{n}",
        "event_name": name,
        "event_ts": ts,
        "event_date": ts.date(),
        "device_ts": ts,
        "received_at": ts,
    }
    row |= {
        "user_id": user,
        "identity": identity,
        "platform": platform,
        "experiment_variant": variant,
        "order_id": order,
        "revenue_usd": revenue,
    }
    return row | {"ingest_date": ts.date(), "source_file": "hand", "line_number": n}


def _table(rows):
    rows = [
        _event(n, *args[:4], **args[4]) if isinstance(args[-1], dict) else _event(n, *args)
        for n, args in enumerate(rows, 1)
    ]
    return pa.Table.from_pylist(rows, schema=CLEANED_EVENTS.arrow())


EVENTS = [
    # Monday D1.
    ("u1", "session_started", "2026-03-02 10:00", "ios", {"variant": "A"}),
    ("u1", "product_viewed", "2026-03-02 10:01", "ios", {"variant": "A"}),
    ("u1", "cart_item_added", "2026-03-02 10:02", "ios", {"variant": "A"}),
    (
        "u1",
        "purchase_completed",
        "2026-03-02 10:05",
        "ios",
        {"variant": "A", "order": "o1", "revenue": 30.0},
    ),
    (
        "u1",
        "purchase_completed",
        "2026-03-02 15:00",
        "web",
        {"variant": "A", "order": "o3", "revenue": 10.5},
    ),
    ("u2", "session_started", "2026-03-02 11:00", "android", {"variant": "B"}),
    ("u2", "product_viewed", "2026-03-02 11:01", "android", {"variant": "B"}),
    (
        "u2",
        "purchase_completed",
        "2026-03-02 11:03",
        "android",
        {"variant": "B", "order": "o2", "revenue": 20.0},
    ),  # no cart first
    ("u3", "session_started", "2026-03-02 11:59", "web", {"variant": "A"}),
    ("u3", "cart_item_added", "2026-03-02 12:00", "web", {}),  # the cart add comes before the view
    ("u3", "product_viewed", "2026-03-02 12:05", "web", {}),
    ("a1", "product_viewed", "2026-03-02 13:00", "web", {"variant": "B", "identity": "anonymous"}),
    # Tuesday D2.
    ("u4", "product_viewed", "2026-03-03 09:00", "android", {"identity": "stitched"}),
    ("u4", "cart_item_added", "2026-03-03 09:01", "android", {"identity": "stitched"}),
    ("u4", "cart_item_added", "2026-03-03 09:02", "android", {"identity": "stitched"}),
    (
        "u4",
        "purchase_completed",
        "2026-03-03 09:10",
        "android",
        {"identity": "stitched", "order": "o4", "revenue": 15.25},
    ),
    ("u1", "product_viewed", "2026-03-03 20:00", "ios", {"variant": "A"}),
    # Monday D3, the next week.
    ("u1", "product_viewed", "2026-03-09 08:00", "ios", {}),
    ("u5", "product_viewed", "2026-03-09 09:00", "web", {}),
]

# Worked out by hand from EVENTS.
DAILY_ACTIVE_USERS = {  # active, logged in, anonymous, events
    D1: (4, 3, 1, 12),  # u1 u2 u3 a1; a1 anonymous
    D2: (2, 1, 0, 5),  # u4 (stitched: neither) and u1
    D3: (2, 2, 0, 2),
}
DAU_BY_PLATFORM = {
    (D1, "ios"): 1,
    (D1, "android"): 1,
    (D1, "web"): 3,  # web: u1's second purchase, u3, a1
    (D2, "android"): 1,
    (D2, "ios"): 1,
    (D3, "ios"): 1,
    (D3, "web"): 1,
}
DAILY_REVENUE = {  # orders, purchasers, revenue, average order value
    D1: (3, 2, 60.5, 20.17),
    D2: (1, 1, 15.25, 15.25),
}
REVENUE_BY_PLATFORM = {
    (D1, "ios"): (1, 30.0),
    (D1, "android"): (1, 20.0),
    (D1, "web"): (1, 10.5),
    (D2, "android"): (1, 15.25),
}
FUNNEL = {  # viewers, cart adders, purchasers, and the three rates
    D1: (4, 1, 1, 0.25, 1.0, 0.25),  # u2 bought without a cart; u3 carted before viewing
    D2: (2, 1, 1, 0.5, 1.0, 0.5),
    D3: (2, 0, 0, 0.0, None, 0.0),
}
EXPERIMENT = {  # exposed, converted, rate, orders, revenue
    (D1, "A"): (2, 1, 0.5, 2, 40.5),  # u1 bought twice after exposure, u3 not
    (D1, "B"): (2, 1, 0.5, 1, 20.0),  # u2 bought, a1 not
    (D2, "A"): (1, 0, 0.0, 0, 0.0),  # u1 only viewed
}
RETENTION = {  # (activity week, cohort week): weeks since, cohort users, active, rate
    (D1, D1): (0, 5, 5, 1.0),  # u1 u2 u3 a1 u4
    (D3, D1): (1, 5, 1, 0.2),  # u1 came back
    (D3, D3): (0, 1, 1, 1.0),  # u5 is new
}


def dbt(data_dir, *args, check=True):
    env = os.environ | {"LAKEHOUSE_DATA_DIR": str(data_dir), "DBT_PROJECT_DIR": str(DBT_DIR)}
    result = subprocess.run(
        [DBT, *args, "--profiles-dir", str(DBT_DIR)],
        cwd=DBT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    if check:
        assert result.returncode == 0, result.stdout[-4000:]
    return result


def build(data_dir, start=None, end=None, version=None, check=True):
    variables = {
        "start_date": start and start.isoformat(),
        "end_date": end and end.isoformat(),
        "cleaned_events_version": version,
    }
    return dbt(data_dir, "build", "--vars", json.dumps(variables), check=check)


def rows(store, table, key, values):
    frame = store.read_arrow(table).to_pylist()
    return {
        tuple(r[k] for k in key) if len(key) > 1 else r[key[0]]: tuple(r[v] for v in values)
        for r in frame
    }


@pytest.fixture
def lake(tmp_path):
    store = DeltaStore(str(tmp_path / "delta"))
    store.write_arrow(CLEANED_EVENTS, _table(EVENTS))
    return tmp_path, store


def assert_known_answers(store):
    assert (
        rows(
            store,
            "daily_active_users",
            ["event_date"],
            ["active_users", "logged_in_users", "anonymous_users", "events"],
        )
        == DAILY_ACTIVE_USERS
    )
    assert {
        k: v[0]
        for k, v in rows(
            store, "daily_active_users_by_platform", ["event_date", "platform"], ["active_users"]
        ).items()
    } == DAU_BY_PLATFORM
    assert (
        rows(
            store,
            "daily_revenue",
            ["event_date"],
            ["orders", "purchasers", "revenue_usd", "average_order_value_usd"],
        )
        == DAILY_REVENUE
    )
    assert (
        rows(
            store,
            "daily_revenue_by_platform",
            ["event_date", "platform"],
            ["orders", "revenue_usd"],
        )
        == REVENUE_BY_PLATFORM
    )
    funnel_columns = [
        "viewers",
        "cart_adders",
        "purchasers",
        "view_to_cart_rate",
        "cart_to_purchase_rate",
        "view_to_purchase_rate",
    ]
    assert rows(store, "daily_funnel", ["event_date"], funnel_columns) == FUNNEL
    experiment_columns = [
        "exposed_users",
        "converted_users",
        "conversion_rate",
        "orders",
        "revenue_usd",
    ]
    assert (
        rows(
            store, "experiment_conversion", ["event_date", "experiment_variant"], experiment_columns
        )
        == EXPERIMENT
    )
    retention_columns = ["weeks_since_first_seen", "cohort_users", "active_users", "retention_rate"]
    assert (
        rows(store, "weekly_retention", ["activity_week", "cohort_week"], retention_columns)
        == RETENTION
    )


def test_every_model_matches_the_hand_worked_answers(lake):
    data_dir, store = lake
    build(data_dir)
    assert_known_answers(store)


def test_a_one_day_run_rebuilds_that_day_and_its_week_not_history(lake):
    data_dir, store = lake
    build(data_dir)
    before = {t: store.version(t) for t in ("daily_active_users", "weekly_retention")}
    # New events on D1 and D2 arrive; only D2 is rebuilt.
    more = _table(
        EVENTS
        + [
            ("u6", "product_viewed", "2026-03-02 18:00", "web", {}),
            ("u7", "product_viewed", "2026-03-03 18:00", "web", {}),
        ]
    )
    store.write_arrow(CLEANED_EVENTS, more)
    build(data_dir, D2, D2)

    dau = rows(
        store,
        "daily_active_users",
        ["event_date"],
        ["active_users", "logged_in_users", "anonymous_users", "events"],
    )
    assert dau == DAILY_ACTIVE_USERS | {D2: (3, 2, 0, 6)}  # u7 counted on D2; D1 still without u6
    # The week of D2 (D1..D1+6) is rebuilt whole: u6 and u7 join the first cohort; the D3 week is untouched.
    retention = rows(
        store,
        "weekly_retention",
        ["activity_week", "cohort_week"],
        ["weeks_since_first_seen", "cohort_users", "active_users", "retention_rate"],
    )
    assert retention == RETENTION | {(D1, D1): (0, 7, 7, 1.0)}
    for table, version in before.items():
        last = store.table(table).history(1)[0]
        assert store.version(table) == version + 1
        assert last["operation"] == "WRITE" and "predicate" in last["operationParameters"], last


def test_a_source_pinned_to_version_zero_reads_version_zero(lake):
    data_dir, store = lake
    # Version 1 loses every purchase; a run pinned to version 0 must not see that.
    store.write_arrow(CLEANED_EVENTS, _table([e for e in EVENTS if e[1] != "purchase_completed"]))
    assert store.version("cleaned_events") == 1
    build(data_dir, version=0)
    assert_known_answers(store)
    assert store.commit_inputs("daily_revenue", store.version("daily_revenue")) == {
        "cleaned_events": 0
    }
    build(data_dir, version=1)
    assert store.commit_inputs("weekly_retention", store.version("weekly_retention")) == {
        "cleaned_events": 1
    }
    assert store.read_arrow("daily_revenue").num_rows == 0


def test_revenue_that_does_not_reconcile_fails_its_asset_check_in_dagster(lake, monkeypatch):
    """A purchase on a platform the platforms seed does not know drops out of the breakdown only."""
    from dagster import materialize

    from assets.metrics import dbt_metrics, dbt_seeds
    from resources.dbt import dbt_cli
    from resources.delta import DeltaStorage

    data_dir, store = lake
    broken = EVENTS + [
        ("u8", "purchase_completed", "2026-03-03 12:00", "tvos", {"order": "o9", "revenue": 99.0})
    ]
    store.write_arrow(CLEANED_EVENTS, _table(broken))
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(data_dir))
    result = materialize(
        [dbt_seeds, dbt_metrics],
        resources={"dbt": dbt_cli(), "delta": DeltaStorage(root=str(data_dir / "delta"))},
        tags={
            "dagster/asset_partition_range_start": D1.isoformat(),
            "dagster/asset_partition_range_end": D2.isoformat(),
        },
        raise_on_error=False,
    )
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c
        for c in result.get_asset_check_evaluations()
    }
    reconciliation = checks[("daily_revenue", "revenue_by_platform_reconciles")]
    assert not reconciliation.passed
    assert (
        reconciliation.metadata["dagster_dbt/failed_row_count"].value == 1
    )  # D2 only: 15.25 + 99.0 against 15.25
    # Everything else about the day is still right: the other checks on daily_revenue pass.
    assert all(
        c.passed
        for (asset, name), c in checks.items()
        if asset == "daily_revenue" and name != "revenue_by_platform_reconciles"
    )
    assert rows(store, "daily_revenue", ["event_date"], ["revenue_usd"])[D2] == (114.25,)
    revenue = [
        m
        for m in result.get_asset_materialization_events()
        if m.asset_key.to_user_string() == "daily_revenue"
    ]
    metadata = revenue[-1].materialization.metadata
    assert "Execution Duration" not in metadata and metadata["dbt_execution_seconds"].value >= 0
    # Column lineage, readable on the materialization: revenue comes from cleaned_events' revenue.
    assert "| revenue_usd | cleaned_events.revenue_usd |" in metadata["column_lineage"].value
