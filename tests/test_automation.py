"""Sensors and declarative automation, evaluated in-process against an ephemeral instance."""

import warnings
from datetime import date, datetime, timezone

from dagster import AssetKey, AssetMaterialization, DagsterInstance, build_sensor_context, evaluate_automation_conditions

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
        again = landing_sensor(build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
        assert again.run_requests == []
        # Late lines arrive in the 03-02 folder and a new day lands.
        with open(day_folder(landing, date(2026, 3, 2)) / "events.jsonl", "a") as f:
            f.write("{}\n")
        generate(landing, date(2026, 3, 3), 1, GeneratorConfig(users=20))
        later = landing_sensor(build_sensor_context(instance=instance, cursor=again.cursor, resources=resources))
        assert [r.partition_key for r in later.run_requests] == ["2026-03-02", "2026-03-03"]


def test_a_new_ingest_day_rebuilds_every_event_date_of_its_late_window():
    import definitions

    evaluated_at = datetime(2026, 3, 12, 1, tzinfo=timezone.utc)
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(defs=definitions.defs, instance=instance, evaluation_time=evaluated_at)
        instance.report_runless_asset_event(AssetMaterialization("raw_events", partition="2026-03-10"))
        result = evaluate_automation_conditions(defs=definitions.defs, instance=instance, cursor=first.cursor, evaluation_time=evaluated_at)
        # cleaned_events P reads ingest dates P..P+3, so ingest date 03-10 feeds event dates 03-07..03-10.
        expected = {"2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"}
        assert result.get_requested_partitions(AssetKey("cleaned_events")) == expected
        assert result.get_requested_partitions(AssetKey("quarantined_events")) == expected
        quiet = evaluate_automation_conditions(defs=definitions.defs, instance=instance, cursor=result.cursor, evaluation_time=evaluated_at)
        assert quiet.total_requested == 0


def test_raw_and_cleaned_materialized_in_one_run_still_rebuild_the_late_window(tmp_path):
    """The day's own event date is rebuilt by the run; the three before it read that ingest day too."""
    import definitions
    from dagster import Definitions

    from assets.cleaned import cleaned_events
    from assets.raw import raw_events
    from resources.delta import DeltaStorage
    from resources.engine import EngineResource
    from resources.landing import LandingArea

    day = date(2026, 3, 10)
    generate(tmp_path / "landing", day, 1, GeneratorConfig(users=20))
    resources = {"delta": DeltaStorage(root=str(tmp_path / "delta")), "landing": LandingArea(path=str(tmp_path / "landing")), "engine": EngineResource()}
    evaluated_at = datetime(2026, 3, 11, 1, tzinfo=timezone.utc)
    with DagsterInstance.ephemeral() as instance:
        first = evaluate_automation_conditions(defs=definitions.defs, instance=instance, evaluation_time=evaluated_at)
        # As the UI launches it: a run whose asset selection names both assets.
        job = Definitions(assets=[raw_events, cleaned_events], resources=resources).resolve_implicit_global_asset_job_def()
        selection = [AssetKey("raw_events"), AssetKey("cleaned_events"), AssetKey("quarantined_events")]
        run = job.execute_in_process(asset_selection=selection, partition_key=day.isoformat(), instance=instance)
        assert run.success and AssetKey("cleaned_events") in instance.get_run_by_id(run.run_id).asset_selection
        result = evaluate_automation_conditions(defs=definitions.defs, instance=instance, cursor=first.cursor, evaluation_time=evaluated_at)
        expected = {"2026-03-07", "2026-03-08", "2026-03-09"}
        assert result.get_requested_partitions(AssetKey("cleaned_events")) == expected
        assert result.get_requested_partitions(AssetKey("quarantined_events")) == expected
