"""A data scientist with only a run id gets the exact training set back, months and maintenance later.

The assets run in process through Dagster on real Delta tables, the real Feast repo (registry,
SQLite online store, the Delta offline store) and a real MLflow SQLite store. The feature tables
are synthetic here, written straight to Delta (the Spark assets that normally write them are
tested elsewhere), so that the distribution the skew check sees is known: stationary unless a test
shifts it.
"""

import os
import warnings
from datetime import timedelta

import mlflow
import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize
from mlflow.tracking import MlflowClient

from lakehouse.cli import main as cli
from lakehouse.ml.fingerprint import content_sha256
from lakehouse.ml.lineage import REGISTERED_MODEL
from lakehouse.tables.storage import DeltaStore
from resources import resources_for
from synthetic_features import FIRST_DAY, land_feature_days

USERS = 1000
SECRET = "s3cr3t-value-that-must-never-be-logged"


def _materialize(*selection: str, run_config: dict | None = None):
    import definitions

    result = materialize(
        list(definitions.defs.assets) + list(definitions.defs.asset_checks),
        selection=list(selection),
        resources=resources_for(),  # built now: LAKEHOUSE_DATA_DIR points at this test's lake
        instance=DagsterInstance.get(),
        run_config=run_config,
        raise_on_error=False,
    )
    return result


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Day 0-19 trained as run 1; then 30 more days landed and trained as run 2."""
    warnings.simplefilter("ignore")
    data = tmp_path_factory.mktemp("lake")
    (data / "dagster_home").mkdir()
    (data / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {"LAKEHOUSE_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home"), "AWS_SECRET_ACCESS_KEY": SECRET}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        store = DeltaStore(str(data / "delta"))
        rng = np.random.default_rng(0)
        propensity = rng.gamma(2.0, 0.4, USERS)
        land_feature_days(store, rng, propensity, range(0, 20))
        first = _materialize("feast_registry", "feast_online_store", "purchase_propensity_model")
        assert first.success
        land_feature_days(store, rng, propensity, range(20, 50))
        second = _materialize("feast_registry", "feast_online_store", "purchase_propensity_model")
        assert second.success
        runs = [r.asset_materializations_for_node("purchase_propensity_model")[0].metadata["mlflow_run_id"].value for r in (first, second)]
        yield {"data": data, "store": store, "rng": rng, "propensity": propensity, "runs": runs, "tracking": f"sqlite:///{data / 'mlflow.db'}"}
    finally:
        for k, v in before.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        mlflow.set_tracking_uri(None)


def test_every_run_records_its_inputs_and_the_registered_model_carries_the_same_tags(lake):
    client = MlflowClient(lake["tracking"])
    store = lake["store"]
    for run_id, version in zip(lake["runs"], ("1", "2")):
        run = client.get_run(run_id)
        tags = run.data.tags
        model = client.get_model_version(REGISTERED_MODEL, version)
        assert model.run_id == run_id
        lineage_tags = {k: v for k, v in tags.items() if k.startswith("lakehouse.") or k.startswith("dagster.") or k == "mlflow.source.git.commit"}
        assert lineage_tags and model.tags == lineage_tags
        assert tags["lakehouse.feature_service"] == "purchase_propensity_v2"
        assert tags["lakehouse.feature_refs"].split(",")[:2] == ["user_activity:events_7d", "user_activity:sessions_7d"]
        assert tags["lakehouse.feature_refs"].endswith("category_activity:category_cart_rate_7d")
        assert tags["lakehouse.git.dirty"] in ("True", "False") and len(tags["mlflow.source.git.commit"]) == 40
        assert tags["dagster.run_id"] and tags["dagster.partition"] == "none"
        datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        for role, table in (("labels", "training_labels"), ("user_activity", "user_features"), ("category_activity", "category_features")):
            v = int(tags[f"lakehouse.input.{role}.version"])
            assert tags[f"lakehouse.input.{role}.uri"] == store.uri(table)
            assert int(tags[f"lakehouse.input.{role}.rows"]) == store.row_count(table, v)
            assert f"{table}@v{v}" in datasets
        snapshot = pd.read_parquet(client.download_artifacts(run_id, "training_set/training_set.parquet", str(lake["data"] / f"dl{version}")))
        assert content_sha256(snapshot) == tags["lakehouse.training_set.sha256"] and len(snapshot) == int(tags["lakehouse.training_set.rows"])
        assert {"test_auc", "test_precision_at_top_10pct", "test_recall_at_top_10pct", "test_brier_score", "test_expected_calibration_error"} <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
        assert artifacts == {f"evaluation/{n}.png" for n in ("roc_curve", "precision_recall_curve", "calibration_curve", "feature_importance")}
    # Run 1 saw 20 days, run 2 all 50: the labels of run 2 are a later version with 30 more days.
    first, second = (client.get_run(r).data.tags for r in lake["runs"])
    assert int(second["lakehouse.input.labels.version"]) > int(first["lakehouse.input.labels.version"])
    assert int(second["lakehouse.training_set.rows"]) == int(first["lakehouse.training_set.rows"]) + 30 * USERS


def test_the_model_learnt_and_was_validated_on_later_prediction_times(lake):
    run = MlflowClient(lake["tracking"]).get_run(lake["runs"][1])
    assert run.data.metrics["test_auc"] > 0.6  # labels follow each user's propensity, which the purchase counts reveal
    split = pd.Timestamp(run.data.params["split_time"])
    assert FIRST_DAY + timedelta(days=30) <= split <= FIRST_DAY + timedelta(days=45)


def test_no_credential_reaches_mlflow(lake):
    data = lake["data"]
    stored = [data / "mlflow.db", *(p for p in (data / "mlartifacts").rglob("*") if p.is_file())]
    assert len(stored) > 10
    assert not [p for p in stored if SECRET.encode() in p.read_bytes()]


def test_an_old_run_reproduces_its_old_hash_from_the_snapshot_and_by_rebuilding(lake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old = lake["runs"][0]
    sha = MlflowClient(lake["tracking"]).get_run(old).data.tags["lakehouse.training_set.sha256"]
    for flags in ([], ["--rebuild"]):
        out = tmp_path / f"old{len(flags)}.parquet"
        assert cli(["reproduce", old, "--out", str(out), *flags]) == 0
        assert sha in capsys.readouterr().out
        frame = pd.read_parquet(out)
        assert content_sha256(frame) == sha
        assert frame["event_timestamp"].max() == FIRST_DAY + timedelta(days=19)  # nothing from the 30 later days


def test_reproduce_fails_clearly_for_an_unknown_run(lake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    assert cli(["reproduce", "f" * 32, "--out", str(tmp_path / "x.parquet")]) == 1
    assert "no MLflow run" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def _skew_check(result):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "serving_features_match_training"]
    return evaluation


def test_the_skew_check_is_quiet_on_unshifted_serving_data_and_fires_on_a_shift(lake):
    store, rng, propensity = lake["store"], lake["rng"], lake["propensity"]
    land_feature_days(store, rng, propensity, range(50, 51))
    quiet = _skew_check(_materialize("feast_online_store"))
    assert quiet.passed, quiet.metadata["features"].value
    assert quiet.metadata["max_psi"].value < 0.1
    assert quiet.metadata["serving_rows"].value == USERS

    land_feature_days(store, rng, propensity, range(51, 52), shift=2.0)
    shifted = _skew_check(_materialize("feast_online_store"))
    assert not shifted.passed and shifted.severity == AssetCheckSeverity.ERROR
    assert shifted.metadata["max_psi"].value >= 0.25
    assert "| purchases_30d |" in shifted.metadata["features"].value and "fail" in shifted.metadata["features"].value
    chart = shifted.metadata["chart"].value
    assert chart.endswith(".png") and os.path.exists(chart.removeprefix("file://"))


def test_maintenance_keeps_the_registered_run_rebuildable_and_reports_an_unpinned_one_gone(lake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old, new = lake["runs"]
    MlflowClient(lake["tracking"]).delete_model_version(REGISTERED_MODEL, "1")  # run 1 is no longer pinned
    result = _materialize("table_maintenance", run_config={"ops": {"table_maintenance": {"config": {"retention_hours": 0, "keep_runs_days": 0}}}})
    assert result.success
    assert result.asset_materializations_for_node("table_maintenance")[0].metadata["files_vacuumed"].value > 0

    assert cli(["reproduce", new, "--rebuild", "--out", str(tmp_path / "new.parquet")]) == 0
    assert cli(["reproduce", old, "--rebuild", "--out", str(tmp_path / "old.parquet")]) == 1
    error = capsys.readouterr().err
    assert "is gone" in error and "vacuumed" in error and "Traceback" not in error
    assert not (tmp_path / "old.parquet").exists()
    # The snapshot does not depend on table versions: the old run's training set is still there.
    assert cli(["reproduce", old, "--out", str(tmp_path / "old.parquet")]) == 0
