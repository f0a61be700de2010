"""Sensors and declarative automation, evaluated in-process against an ephemeral instance."""

import warnings
from datetime import date, datetime, timezone

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    build_sensor_context,
    evaluate_automation_conditions,
)

from lakehouse.events.generator import GeneratorConfig, generate
from lakehouse.events.vocabulary import day_folder

warnings.simplefilter("ignore")


def test_landing_sensor_requests_new_and_changed_days_once(tmp_path):
    from assets.raw import landing_sensor
    from resources.landing import LandingArea

    landing = tmp_path / "landing"
    generate(landing, date(2026, 3, 1), 2, GeneratorConfig(users=20))
    resources = {"landing": LandingArea(path=str(landing))}
    with DagsterInstance.ephemeral() as instance:
        first = landing_sensor(build_sensor_context(instance=instance, resources=resources))
        assert [r.partition_key for r in first.run_requests] == ["2026-03-01", "2026-03-02"]
        again = landing_sensor(
            build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
        )
        assert again.run_requests == []
        # Late lines arrive in the 03-02 folder and a new day lands.
        with open(day_folder(landing, date(2026, 3, 2)) / "events.jsonl", "a") as f:
            f.write("{}\n")
        generate(landing, date(2026, 3, 3), 1, GeneratorConfig(users=20))
        later = landing_sensor(
            build_sensor_context(instance=instance, cursor=again.cursor, resources=resources)
        )
        assert [r.partition_key for r in later.run_requests] == ["2026-03-02", "2026-03-03"]


def test_a_new_ingest_day_rebuilds_every_event_date_of_its_late_window():
    import definitions

    evaluated_at = datetime(2026, 3, 12, 1, tzinfo=timezone.utc)
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(
            defs=definitions.defs, instance=instance, evaluation_time=evaluated_at
        )
        instance.report_runless_asset_event(
            AssetMaterialization("raw_events", partition="2026-03-10")
        )
        result = evaluate_automation_conditions(
            defs=definitions.defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=evaluated_at,
        )
        # cleaned_events P reads ingest dates P..P+3, so ingest date 03-10 feeds event dates 03-07..03-10.
        expected = {"2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"}
        assert result.get_requested_partitions(AssetKey("cleaned_events")) == expected
        assert result.get_requested_partitions(AssetKey("quarantined_events")) == expected
        quiet = evaluate_automation_conditions(
            defs=definitions.defs,
            instance=instance,
            cursor=result.cursor,
            evaluation_time=evaluated_at,
        )
        assert quiet.total_requested == 0


def test_raw_and_cleaned_materialized_in_one_run_still_rebuild_the_late_window(tmp_path):
    """The day's own event date is rebuilt by the run; the three before it read that ingest day too."""
    from dagster import Definitions

    import definitions
    from assets.cleaned import cleaned_events
    from assets.raw import raw_events
    from resources.delta import DeltaStorage
    from resources.engine import EngineResource
    from resources.landing import LandingArea

    day = date(2026, 3, 10)
    generate(tmp_path / "landing", day, 1, GeneratorConfig(users=20))
    resources = {
        "delta": DeltaStorage(root=str(tmp_path / "delta")),
        "landing": LandingArea(path=str(tmp_path / "landing")),
        "engine": EngineResource(),
    }
    evaluated_at = datetime(2026, 3, 11, 1, tzinfo=timezone.utc)
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(
            defs=definitions.defs, instance=instance, evaluation_time=evaluated_at
        )
        # As the UI launches it: a run whose asset selection names both assets.
        job = Definitions(
            assets=[raw_events, cleaned_events], resources=resources
        ).resolve_implicit_global_asset_job_def()
        selection = [
            AssetKey("raw_events"),
            AssetKey("cleaned_events"),
            AssetKey("quarantined_events"),
        ]
        run = job.execute_in_process(
            asset_selection=selection, partition_key=day.isoformat(), instance=instance
        )
        assert (
            run.success
            and AssetKey("cleaned_events") in instance.get_run_by_id(run.run_id).asset_selection
        )
        result = evaluate_automation_conditions(
            defs=definitions.defs,
            instance=instance,
            cursor=first.cursor,
            evaluation_time=evaluated_at,
        )
        expected = {"2026-03-07", "2026-03-08", "2026-03-09"}
        assert result.get_requested_partitions(AssetKey("cleaned_events")) == expected
        assert result.get_requested_partitions(AssetKey("quarantined_events")) == expected


@pytest.mark.slow  # runs dbt twice
def test_a_late_purchase_reaches_daily_revenue_of_its_own_date_through_the_automation(
    tmp_path, monkeypatch
):
    import json

    import pyarrow.compute as pc
    from dagster import Definitions, materialize

    from assets.cleaned import cleaned_events
    from assets.metrics import dbt_metrics, dbt_seeds
    from assets.raw import raw_events
    from lakehouse.tables.storage import DeltaStore
    from resources.dbt import dbt_cli
    from resources.delta import DeltaStorage
    from resources.engine import EngineResource
    from resources.landing import LandingArea

    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))  # dbt's profile reads the lake from it
    d1, d2, d3 = date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12)
    quiet = GeneratorConfig(
        users=40,
        seed=5,
        duplicate_rate=0,
        clock_skew_rate=0,
        late_rate=0,
        malformed_rate=0,
        drift_from=None,
    )
    generate(tmp_path / "landing", d1, 3, quiet)
    resources = {
        "delta": DeltaStorage(root=str(tmp_path / "delta")),
        "landing": LandingArea(path=str(tmp_path / "landing")),
        "engine": EngineResource(),
        "dbt": dbt_cli(),
    }
    graph = [raw_events, cleaned_events, dbt_seeds, dbt_metrics]
    defs = Definitions(assets=graph, resources=resources)
    store = DeltaStore(str(tmp_path / "delta"))
    evaluated_at = datetime(2026, 3, 13, 9, 30, tzinfo=timezone.utc)

    def run(assets, first, last, instance):
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager

        tags = {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }
        assert materialize(assets, resources=resources, instance=instance, tags=tags).success
        # dagster-dbt reads column metadata through dbt-duckdb in the run's process, whose connection keeps
        # dbt.duckdb locked: a Dagster run has a process of its own, these runs share the test's.
        if DuckDBConnectionManager._ENV is not None:  # noqa: SLF001
            DuckDBConnectionManager._ENV.close()  # noqa: SLF001
            DuckDBConnectionManager._ENV = None  # noqa: SLF001

    def revenue(day):
        table = store.read_arrow("daily_revenue")
        return table.filter(pc.equal(table["event_date"], day)).column("revenue_usd").to_pylist()

    with DagsterInstance.ephemeral() as instance:
        run(graph, d1, d3, instance)
        before = revenue(d2)
        quiet_tick = evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=evaluated_at
        )
        # A purchase made on d2 at 18:00 reaches the server on d3 at 09:00, and d3's folder is ingested again.
        late = {
            "event_id": "late-purchase",
            "event_name": "purchase_completed",
            "timestamp": "2026-03-11T18:00:00Z",
            "sent_at": "2026-03-12T09:00:00Z",
            "received_at": "2026-03-12T09:00:00Z",
            "user_id": "usr_late",
            "session_id": "ses_late",
            "platform": "web",
            "properties": {"order_id": "o-late", "revenue_usd": 42.5},
        }
        with open(day_folder(tmp_path / "landing", d3) / "events.jsonl", "a") as f:
            f.write(json.dumps(late) + "\n")
        run([raw_events], d3, d3, instance)

        tick = evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=quiet_tick.cursor, evaluation_time=evaluated_at
        )
        rebuilt = sorted(tick.get_requested_partitions(AssetKey("cleaned_events")))
        assert d2.isoformat() in rebuilt and not tick.get_requested_partitions(
            AssetKey("daily_revenue")
        )  # the metrics wait for the rebuild
        run(
            [cleaned_events],
            date.fromisoformat(rebuilt[0]),
            date.fromisoformat(rebuilt[-1]),
            instance,
        )

        tick = evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=tick.cursor, evaluation_time=evaluated_at
        )
        assert tick.get_requested_partitions(AssetKey("daily_revenue")) == set(rebuilt)
        run(
            [dbt_metrics], date.fromisoformat(rebuilt[0]), date.fromisoformat(rebuilt[-1]), instance
        )

    assert revenue(d2) == [round(before[0] + 42.5, 2)]
