"""The code location loads, and its asset graph is the one the README describes."""

import warnings

import pytest
from dagster import AssetKey

from lakehouse.config import DEFAULT_DATA_DIR
from lakehouse.features.feature_store import FEATURE_REPO, render_config

METRICS = [
    "daily_active_users",
    "daily_active_users_by_platform",
    "daily_revenue",
    "daily_revenue_by_platform",
    "daily_funnel",
    "weekly_retention",
    "experiment_conversion",
    "platforms",
]


def test_definitions_load_with_every_group_and_dependency():
    warnings.simplefilter("ignore")
    import definitions

    graph = definitions.defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "raw_events": "raw",
        "cleaned_events": "cleaned",
        "quarantined_events": "cleaned",
        **dict.fromkeys(METRICS, "metrics"),
        "user_features": "features",
        "category_features": "features",
        "feast_registry": "features",
        "feast_online_store": "features",
        "training_labels": "ml",
        "purchase_propensity_model": "ml",
        "table_maintenance": "maintenance",
    }
    parents = {
        key.to_user_string(): sorted(p.to_user_string() for p in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    assert parents["cleaned_events"] == ["raw_events"]
    for model in METRICS[:-1]:
        assert "cleaned_events" in parents[model], model
    assert parents["daily_revenue_by_platform"] == ["cleaned_events", "platforms"]
    assert parents["purchase_propensity_model"] == [
        "category_features",
        "feast_registry",
        "training_labels",
        "user_features",
    ]
    checks = {key.name for key in graph.asset_check_keys}
    assert {
        "raw_events_schema",
        "raw_events_volume",
        "raw_events_unread_landing",
        "cleaned_events_schema",
        "quarantined_events_schema",
        "cleaned_events_volume",
        "cleaned_events_accounting",
        "user_features_schema",
        "training_labels_schema",
        "category_features_schema",
        "online_matches_offline",
        "training_set_point_in_time",
        "serving_features_match_training",
        "revenue_by_platform_reconciles",
        "unique_daily_revenue_event_date",
    } <= checks
    assert {"landing_sensor", "late_data_sensor", "freshness_checks_sensor"} <= {
        s.name for s in definitions.defs.sensors
    }
    (schedule,) = definitions.defs.schedules
    assert (schedule.name, schedule.job_name, schedule.cron_schedule) == (
        "table_maintenance_schedule",
        "table_maintenance_job",
        "0 3 * * *",
    )
    # What the UI shows next to each: nothing reads "No description provided".
    assert all(s.description for s in [*definitions.defs.sensors, schedule]), [
        s.name for s in definitions.defs.sensors if not s.description
    ]
    undescribed = [
        key.name for key in graph.asset_check_keys if not graph.get_check_spec(key).description
    ]
    assert undescribed == []
    reconcile = next(
        key for key in graph.asset_check_keys if key.name == "revenue_by_platform_reconciles"
    )
    assert "daily_revenue_by_platform" in graph.get_check_spec(reconcile).description
    unique = next(
        key for key in graph.asset_check_keys if key.name == "unique_daily_revenue_event_date"
    )
    assert (
        graph.get_check_spec(unique).description
        == "Fails if two rows of daily_revenue share the same event_date."
    )


def dbt_model_docs() -> dict[str, dict]:
    import yaml

    from resources.dbt import DBT_DIR

    return {
        m["name"]: m
        for m in yaml.safe_load((DBT_DIR / "models" / "schema.yml").read_text())["models"]
    }


def test_every_metric_is_documented_once_and_its_definition_is_the_asset_description():
    import definitions

    graph = definitions.defs.resolve_asset_graph()
    docs = dbt_model_docs()
    assert set(docs) == set(METRICS) - {"platforms"}
    for name, model in docs.items():
        text = model["description"]
        for part in ("Meaning:", "Computed", "Limits:", "Owner:"):
            assert part in text, (name, part)
        assert model["meta"]["owner"]
        assert graph.get(AssetKey(name)).description.startswith(
            text.strip()
        )  # dagster-dbt appends the SQL


def test_committed_feature_store_yaml_is_the_render_for_the_default_data_dir():
    assert (FEATURE_REPO / "feature_store.yaml").read_text() == render_config(DEFAULT_DATA_DIR)


def test_workspace_yaml_loads_the_code_location(tmp_path):
    """What `dagster dev` loads from the repo root."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from lakehouse.config import REPO_ROOT

    env = os.environ | {"DAGSTER_HOME": str(tmp_path), "LAKEHOUSE_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lakehouse" in result.stdout + result.stderr


def test_an_unknown_profile_is_refused_by_name(monkeypatch):
    from resources import resources_for

    monkeypatch.setenv("LAKEHOUSE_PROFILE", "clustr")
    with pytest.raises(
        ValueError, match=r"LAKEHOUSE_PROFILE='clustr': expected one of \['cluster', 'local'\]"
    ):
        resources_for()


CLUSTER_ENV = {
    "LAKEHOUSE_PROFILE": "cluster",
    "LAKEHOUSE_DELTA_ROOT": "s3://bucket/delta",
    "LAKEHOUSE_SPARK_MASTER": "spark://127.0.0.1:7077",
    "LAKEHOUSE_REDIS": "127.0.0.1:6379",
    "LAKEHOUSE_PG_URL": "postgresql://lakehouse@127.0.0.1:5432",
    "MLFLOW_TRACKING_URI": "https://ml:planted-password@mlflow.internal:5000",
}


def test_the_cluster_profile_names_what_it_is_missing_and_holds_no_credential_in_its_config(
    monkeypatch, tmp_path
):
    import yaml
    from dagster import EnvVar

    from resources import resources_for
    from resources.instance import write_instance_config

    for name in CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAKEHOUSE_PROFILE", "cluster")
    with pytest.raises(
        ValueError,
        match=(
            "needs LAKEHOUSE_DELTA_ROOT, LAKEHOUSE_SPARK_MASTER, MLFLOW_TRACKING_URI, "
            "LAKEHOUSE_REDIS, LAKEHOUSE_PG_URL"
        ),
    ):
        resources_for()

    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)
    resources = resources_for()
    assert resources["delta"].root == "s3://bucket/delta"
    assert (resources["engine"].kind, resources["engine"].spark_master) == (
        "spark",
        "spark://127.0.0.1:7077",
    )
    # The tracking URI is a variable's name until a run starts; the UI link has no password.
    assert resources["mlflow_tracking"].tracking_uri == EnvVar("MLFLOW_TRACKING_URI")
    assert resources["mlflow_tracking"].ui_url == "https://mlflow.internal:5000"

    home = tmp_path / "home"
    config = yaml.safe_load(write_instance_config(home).read_text())
    assert config["storage"]["postgres"]["postgres_db"] == {
        "username": "lakehouse",
        "password": {"env": "LAKEHOUSE_PG_PASSWORD"},
        "hostname": "127.0.0.1",
        "port": 5432,
        "db_name": "dagster",
    }
    # A dagster.yaml of the user's own is left as it is; the project's is rewritten for the profile.
    monkeypatch.setenv("LAKEHOUSE_PROFILE", "local")
    assert "storage" not in yaml.safe_load(write_instance_config(home).read_text())
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    monkeypatch.setenv("LAKEHOUSE_PROFILE", "cluster")
    assert write_instance_config(home).read_text() == "telemetry:\n  enabled: true\n"


def test_partitions_start_at_the_first_landed_day_unless_configured(tmp_path, monkeypatch):
    from datetime import date, datetime, timedelta, timezone

    from assets.partitions import partitions_start

    monkeypatch.delenv("LAKEHOUSE_PARTITIONS_START")
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    assert partitions_start() == datetime.now(timezone.utc).date() - timedelta(
        days=30
    )  # nothing landed yet
    for name in ("date=2026-10-25", "date=2026-10-24", "date=2026-02-30", "misc"):
        (tmp_path / "landing" / name).mkdir(parents=True)
    assert partitions_start() == date(2026, 10, 24)
    monkeypatch.setenv("LAKEHOUSE_PARTITIONS_START", "2026-09-01")
    assert partitions_start() == date(2026, 9, 1)


def test_the_static_seed_is_not_partitioned_and_the_metrics_are_delta_tables():
    import definitions

    graph = definitions.defs.resolve_asset_graph()
    revenue = graph.get(AssetKey("daily_revenue"))
    assert revenue.kinds == {"dbt", "delta"} and revenue.metadata["dagster/storage_kind"] == "delta"
    assert "dagster_dbt/project" not in revenue.metadata  # shown as "unserializable" in the UI
    assert (
        revenue.metadata["dagster/code_references"]
        .code_references[0]
        .file_path.endswith("dbt/models/daily_revenue.sql")
    )
    assert graph.get(AssetKey("platforms")).partitions_def is None
    assert graph.get(AssetKey("daily_revenue")).partitions_def is not None


def test_every_component_reads_the_one_delta_root(monkeypatch, tmp_path):
    """LAKEHOUSE_DELTA_ROOT moves the whole lake: the assets, dbt's source and writer, and the Feast repo."""
    import importlib.util
    import os
    import runpy

    import jinja2
    import yaml

    from lakehouse.config import REPO_ROOT
    from resources import resources_for

    root = str(tmp_path / "elsewhere")
    monkeypatch.setenv("LAKEHOUSE_DELTA_ROOT", root)
    assert resources_for()["delta"].root == root

    spec = importlib.util.spec_from_file_location(
        "delta_writer", REPO_ROOT / "dbt" / "plugins" / "delta_writer.py"
    )
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    assert writer.delta_table_path("daily_revenue") == f"{root}/daily_revenue"

    # sources.yml as dbt renders it: env_var() reads the environment, var() the run's variables.
    template = jinja2.Environment().from_string(
        (REPO_ROOT / "dbt" / "models" / "sources.yml").read_text()
    )
    rendered = yaml.safe_load(
        template.render(
            env_var=lambda name, default=None: os.environ.get(name, default), var=lambda name: ""
        )
    )
    (table,) = rendered["sources"][0]["tables"]
    assert table["meta"]["delta_table_path"] == f"{root}/cleaned_events"

    repo = runpy.run_path(str(REPO_ROOT / "feature_repo" / "purchase_propensity.py"))
    assert {repo["user_features_source"].path, repo["category_features_source"].path} == {
        f"{root}/user_features",
        f"{root}/category_features",
    }
    assert (
        repo["purchase_propensity_v2"].logging_config.destination.path == f"{root}/served_features"
    )


def test_each_profile_has_its_own_dagster_home_and_the_local_one_survives_a_cluster_run(
    monkeypatch, tmp_path
):
    """A lake whose local home an earlier `make cluster-demo` gave the cluster's dagster.yaml works again
    once either profile runs; from then on the cluster profile writes only its own home."""
    import yaml
    from dagster import DagsterInstance, asset, materialize
    from dagster._core.errors import DagsterInvalidConfigError

    from resources.instance import prepare_instance, write_instance_config

    @asset
    def one() -> int:
        return 1

    def runs_of_the_local_instance() -> int:
        with DagsterInstance.from_config(str(local_home)) as instance:
            assert materialize([one], instance=instance).success
            return instance.get_runs_count()

    monkeypatch.delenv("LAKEHOUSE_PG_PASSWORD", raising=False)
    data = tmp_path / "data"
    local_env = {"LAKEHOUSE_DATA_DIR": str(data)}
    cluster_env = local_env | CLUSTER_ENV
    local_home = (
        data / "dagster_home"
    )  # where the README and earlier versions put it: its run history stays there
    assert prepare_instance(local_env) == local_home
    assert runs_of_the_local_instance() == 1
    # What `make cluster-demo` left before each profile had its own home.
    write_instance_config(local_home, cluster_env)
    with pytest.raises(DagsterInvalidConfigError, match="LAKEHOUSE_PG_PASSWORD"):
        DagsterInstance.from_config(str(local_home))

    cluster_home = prepare_instance(cluster_env)
    assert cluster_home == data / "dagster_home_cluster"
    assert (
        yaml.safe_load((cluster_home / "dagster.yaml").read_text())["storage"]["postgres"][
            "postgres_db"
        ]["db_name"]
        == "dagster"
    )
    assert "storage" not in yaml.safe_load((local_home / "dagster.yaml").read_text())
    assert runs_of_the_local_instance() == 2  # the earlier run is still there
    # Running the profiles one after the other leaves each its own dagster.yaml.
    for _ in range(2):
        assert (
            prepare_instance(cluster_env) == cluster_home
            and prepare_instance(local_env) == local_home
        )
    assert "storage" in yaml.safe_load((cluster_home / "dagster.yaml").read_text())
    assert runs_of_the_local_instance() == 3


def test_a_dagster_home_set_in_the_environment_is_used_as_it_is(tmp_path):
    import yaml

    from resources.instance import prepare_instance

    data = tmp_path / "data"
    mine = tmp_path / "mine"
    assert (
        prepare_instance({"LAKEHOUSE_DATA_DIR": str(data), "DAGSTER_HOME": str(mine)} | CLUSTER_ENV)
        == mine
    )
    assert "storage" in yaml.safe_load((mine / "dagster.yaml").read_text())
    assert not data.exists()
