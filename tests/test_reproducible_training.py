"""A data scientist with only a run id gets the exact training set back, months and maintenance later.

The assets run in process through Dagster on real Delta tables, the real Feast repo (registry,
SQLite online store, the Delta offline store) and a real MLflow SQLite store. The feature tables
are synthetic here, written straight to Delta (the Spark assets that normally write them are
tested elsewhere), so that the distribution the skew check sees is known: stationary unless a test
shifts it.
"""

import json
import os
import warnings
from datetime import timedelta

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from dagster import AssetCheckSeverity, DagsterInstance, materialize
from mlflow.tracking import MlflowClient
from synthetic_features import FIRST_DAY, land_feature_days

from lakehouse.cli import main as cli
from lakehouse.features.feature_store import FEATURE_SERVICE, open_store
from lakehouse.features.served_features import flush_served_features
from lakehouse.ml.fingerprint import ARROW_IPC, CANONICAL_V1, content_sha256
from lakehouse.ml.lineage import HASH_FORM_TAG, REGISTERED_MODEL
from lakehouse.ml.serving_skew import recent_entity_rows
from lakehouse.tables.schemas import CATEGORY_FEATURES, TRAINING_LABELS, USER_FEATURES
from lakehouse.tables.storage import DeltaStore
from resources import resources_for

USERS = 1000


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
    env = {"LAKEHOUSE_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home")}
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
        runs = [
            r.asset_materializations_for_node("purchase_propensity_model")[0]
            .metadata["mlflow_run_id"]
            .value
            for r in (first, second)
        ]
        yield {
            "data": data,
            "store": store,
            "rng": rng,
            "propensity": propensity,
            "runs": runs,
            "tracking": f"sqlite:///{data / 'mlflow.db'}",
        }
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
        lineage_tags = {
            k: v
            for k, v in tags.items()
            if k.startswith("lakehouse.")
            or k.startswith("dagster.")
            or k == "mlflow.source.git.commit"
        }
        assert lineage_tags and model.tags == lineage_tags
        assert tags["lakehouse.feature_service"] == "purchase_propensity_v2"
        assert tags["lakehouse.feature_refs"].split(",")[:2] == [
            "user_activity:events_7d",
            "user_activity:sessions_7d",
        ]
        assert tags["lakehouse.feature_refs"].endswith("category_activity:category_cart_rate_7d")
        assert (
            tags["lakehouse.git.dirty"] in ("True", "False")
            and len(tags["mlflow.source.git.commit"]) == 40
        )
        assert tags["dagster.run_id"] and tags["dagster.partition"] == "none"
        datasets = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        for role, schema in (
            ("labels", TRAINING_LABELS),
            ("user_activity", USER_FEATURES),
            ("category_activity", CATEGORY_FEATURES),
        ):
            table = schema.name
            v = int(tags[f"lakehouse.input.{role}.version"])
            assert tags[f"lakehouse.input.{role}.uri"] == store.uri(table)
            assert int(tags[f"lakehouse.input.{role}.rows"]) == store.row_count(table, v)
            # What the MLflow UI shows of each input: its source (a local path, which the UI prints, and
            # the version), its columns, its row count, and the role it played.
            dataset_input = datasets[f"{table}@v{v}"]
            dataset = dataset_input.dataset
            assert dataset.source_type == "local"
            assert json.loads(dataset.source) == {"uri": store.uri(table), "delta_table_version": v}
            columns = json.loads(dataset.schema)["mlflow_colspec"]
            assert [c["name"] for c in columns] == list(schema.column_names)
            assert {c["name"]: c["type"] for c in columns}[
                "event_timestamp" if table == "training_labels" else "feature_ts"
            ] == "datetime"
            assert json.loads(dataset.profile) == {
                "num_rows": store.row_count(table, v),
                "num_columns": len(schema.columns),
                "delta_version": v,
            }
            assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == role
        snapshot = pd.read_parquet(
            client.download_artifacts(
                run_id, "training_set/training_set.parquet", str(lake["data"] / f"dl{version}")
            )
        )
        assert tags[HASH_FORM_TAG] == CANONICAL_V1
        assert content_sha256(snapshot, CANONICAL_V1) == tags[
            "lakehouse.training_set.sha256"
        ] and len(snapshot) == int(tags["lakehouse.training_set.rows"])
        # The estimator's hyperparameters as training.py sets them, and the temporal split.
        params = run.data.params
        assert {k: params[k] for k in (
            "model", "max_iter", "learning_rate", "random_state", "loss", "max_leaf_nodes", "l2_regularization",
        )} == {
            "model": "HistGradientBoostingClassifier", "max_iter": "150", "learning_rate": "0.08", "random_state": "0",
            "loss": "log_loss", "max_leaf_nodes": "31", "l2_regularization": "0.0",
        }  # fmt: skip
        assert params["split"] == "temporal" and params["test_share"] == "0.25"
        assert pd.Timestamp(params["window_start"]) == snapshot["event_timestamp"].min()
        assert pd.Timestamp(params["window_end"]) == snapshot["event_timestamp"].max()
        assert (
            pd.Timestamp(params["window_start"])
            < pd.Timestamp(params["split_time"])
            <= pd.Timestamp(params["window_end"])
        )
        # A description on the run and on its model version: what it predicts, its window, its features,
        # how to reproduce it.
        description = tags["mlflow.note.content"]
        assert model.description == description
        for needle in (
            "purchase in the 7 days",
            f"{params['window_start']} to {params['window_end']}",
            params["split_time"],
            "`purchase_propensity_v2`",
            f"`lakehouse reproduce {run_id}",
        ):
            assert needle in description, needle
        assert {
            "test_auc",
            "test_precision_at_top_10pct",
            "test_recall_at_top_10pct",
            "test_brier_score",
            "test_expected_calibration_error",
        } <= set(run.data.metrics)
        artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
        assert artifacts == {
            f"evaluation/{n}.png"
            for n in (
                "roc_curve",
                "precision_recall_curve",
                "calibration_curve",
                "feature_importance",
            )
        }
    # Run 1 saw 20 days, run 2 all 50: the labels of run 2 are a later version with 30 more days.
    first, second = (client.get_run(r).data.tags for r in lake["runs"])
    assert int(second["lakehouse.input.labels.version"]) > int(
        first["lakehouse.input.labels.version"]
    )
    assert (
        int(second["lakehouse.training_set.rows"])
        == int(first["lakehouse.training_set.rows"]) + 30 * USERS
    )
    # Both versions passed the point-in-time check when registered; the newer took the alias from the older.
    registered = client.get_registered_model(REGISTERED_MODEL)
    assert {alias: str(v) for alias, v in registered.aliases.items()} == {"champion": "2"}
    assert client.get_model_version_by_alias(REGISTERED_MODEL, "champion").run_id == lake["runs"][1]
    assert client.get_model_version(REGISTERED_MODEL, "1").aliases == []
    assert (
        "purchase in the 7 days" in registered.description
        and "lakehouse reproduce RUN_ID" in registered.description
    )
    assert (
        "`champion`" in registered.description
        and "`purchase_propensity_v2`" in registered.description
    )


def test_every_experiment_in_the_store_keeps_its_artifacts_under_the_data_dir(lake):
    """The Default experiment (0) too: MLflow writes its location once, when the store is created, from
    the creating process's working directory unless the store is created with the data dir's artifact root."""
    root = (lake["data"].resolve() / "mlartifacts").as_uri()
    experiments = {
        e.name: e.artifact_location for e in MlflowClient(lake["tracking"]).search_experiments()
    }
    assert set(experiments) == {"Default", "purchase_propensity"}
    assert experiments == {"Default": f"{root}/0", "purchase_propensity": root}


def test_the_model_learnt_and_was_validated_on_later_prediction_times(lake):
    run = MlflowClient(lake["tracking"]).get_run(lake["runs"][1])
    assert (
        run.data.metrics["test_auc"] > 0.6
    )  # labels follow each user's propensity, which the purchase counts reveal
    split = pd.Timestamp(run.data.params["split_time"])
    assert FIRST_DAY + timedelta(days=30) <= split <= FIRST_DAY + timedelta(days=45)


def test_an_old_run_reproduces_its_old_hash_from_the_snapshot_and_by_rebuilding(
    lake, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old = lake["runs"][0]
    sha = MlflowClient(lake["tracking"]).get_run(old).data.tags["lakehouse.training_set.sha256"]
    for flags in ([], ["--rebuild"]):
        out = tmp_path / f"old{len(flags)}.parquet"
        assert cli(["reproduce", old, "--out", str(out), *flags]) == 0
        assert sha in capsys.readouterr().out
        frame = pd.read_parquet(out)
        assert content_sha256(frame) == sha
        assert frame["event_timestamp"].max() == FIRST_DAY + timedelta(
            days=19
        )  # nothing from the 30 later days


def test_reproduce_fails_clearly_for_an_unknown_run(lake, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    assert cli(["reproduce", "f" * 32, "--out", str(tmp_path / "x.parquet")]) == 1
    assert "no MLflow run" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


# Failure paths of `lakehouse reproduce`. The shared runs stay untouched: each test tampers with a copy
# (of the MLflow store, the Feast registry, a Delta table or a run's artifacts) and points the command
# at it with MLFLOW_TRACKING_URI / LAKEHOUSE_DATA_DIR.


def _store_copy(lake, tmp_path) -> str:
    """A copy of the MLflow tracking store (the run's tags and artifact location live in it); its URI."""
    import sqlite3

    target = tmp_path / "mlflow_copy.db"
    source, copy = sqlite3.connect(lake["data"] / "mlflow.db"), sqlite3.connect(target)
    with copy:
        source.backup(copy)
    source.close()
    copy.close()
    return f"sqlite:///{target}"


def _edit_store(tracking: str, sql: str, params: tuple) -> None:
    import sqlite3

    conn = sqlite3.connect(tracking.removeprefix("sqlite:///"))
    with conn:
        assert conn.execute(sql, params).rowcount == 1
    conn.close()


def _set_tag(tracking: str, run_id: str, key: str, value: str) -> None:
    _edit_store(
        tracking, "UPDATE tags SET value = ? WHERE run_uuid = ? AND key = ?", (value, run_id, key)
    )


def _reproduce_fails(args: list[str], out, capsys) -> str:
    """`lakehouse reproduce ARGS --out OUT` exits 1, writes nothing and says why in one line, no traceback."""
    assert cli(["reproduce", *args, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert (
        captured.err.startswith("error: ")
        and "Traceback" not in captured.err
        and captured.out == ""
    )
    assert not out.exists()
    return captured.err


def test_reproduce_fails_when_the_training_set_no_longer_hashes_to_the_logged_sha256(
    lake, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old = lake["runs"][0]
    tags = MlflowClient(lake["tracking"]).get_run(old).data.tags
    sha, rows = tags["lakehouse.training_set.sha256"], int(tags["lakehouse.training_set.rows"])
    tracking = _store_copy(lake, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)

    # The recorded digest is not the data's: both the snapshot and the rebuilt set are refused by it.
    _set_tag(tracking, old, "lakehouse.training_set.sha256", "0" * 64)
    for flags, source in (([], "snapshot"), (["--rebuild"], "rebuilt")):
        error = _reproduce_fails([old, *flags], tmp_path / "out.parquet", capsys)
        assert (
            f"{source} training set differs from the logged one (sha256 {sha} vs {'0' * 64}, "
            f"rows {rows} vs {rows}; hash form {CANONICAL_V1})" in error
        )

    # The digest is right but the data under the pinned labels version changed: same rows, one label
    # flipped, in a copy of the table at the same version number that the copied run now points at.
    from deltalake import DeltaTable, write_deltalake

    _set_tag(tracking, old, "lakehouse.training_set.sha256", sha)
    version = int(tags["lakehouse.input.labels.version"])
    labels = DeltaTable(tags["lakehouse.input.labels.uri"], version=version).to_pyarrow_table()
    flipped = labels.to_pandas()
    flipped.loc[0, "label"] = 1 - flipped.loc[0, "label"]
    tampered = tmp_path / "training_labels"
    for _ in range(version + 1):
        write_deltalake(
            str(tampered),
            pa.Table.from_pandas(flipped, schema=labels.schema, preserve_index=False),
            mode="overwrite",
        )
    assert DeltaTable(str(tampered)).version() == version
    _set_tag(tracking, old, "lakehouse.input.labels.uri", str(tampered))
    error = _reproduce_fails([old, "--rebuild"], tmp_path / "out.parquet", capsys)
    assert (
        "rebuilt training set differs from the logged one" in error
        and f"vs {sha}, rows {rows} vs {rows}; hash form {CANONICAL_V1})" in error
    )
    # The snapshot does not depend on the tables: it still matches.
    assert cli(["reproduce", old, "--out", str(tmp_path / "snapshot.parquet")]) == 0


def test_reproduce_fails_when_the_feature_service_was_redefined(
    lake, tmp_path, capsys, monkeypatch
):
    """purchase_propensity_v2 redefined in place, in a copy of the Feast registry, to serve v1's features."""
    import shutil

    from feast import FeatureService

    from lakehouse.features.feature_store import open_store

    old = lake["runs"][0]
    recorded = (
        MlflowClient(lake["tracking"]).get_run(old).data.tags["lakehouse.feature_refs"].split(",")
    )
    data = tmp_path / "data"
    (data / "feast").mkdir(parents=True)
    shutil.copy(lake["data"] / "feast" / "registry.db", data / "feast" / "registry.db")
    store = open_store(data)
    v1 = [
        "events_7d",
        "sessions_7d",
        "views_7d",
        "carts_7d",
        "purchases_7d",
        "purchases_30d",
        "revenue_30d",
        "days_since_last_event",
    ]
    store.apply(
        [
            FeatureService(
                name="purchase_propensity_v2",
                features=[store.get_feature_view("user_activity")[v1]],
            )
        ]
    )
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(data))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", lake["tracking"])

    error = _reproduce_fails([old, "--rebuild"], tmp_path / "out.parquet", capsys)
    now = [f"user_activity:{f}" for f in v1]
    assert (
        f"feature service purchase_propensity_v2 now serves {now}, the run used {recorded}" in error
    )
    assert "restore the service definition" in error
    assert len(recorded) > len(now)  # what the run used was the real v2, not the redefinition


def _another_lake(data, users: int, days: range, monkeypatch):
    """A lake of synthetic feature tables at `data` with its Feast registry applied (its sources: these
    tables), and LAKEHOUSE_DATA_DIR pointing at it. Returns its DeltaStore and Feast store."""
    from lakehouse.features.feature_store import apply_definitions

    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(data))
    store = DeltaStore(str(data / "delta"))
    rng = np.random.default_rng(1)
    land_feature_days(store, rng, rng.gamma(2.0, 0.4, users), days)
    apply_definitions(open_store(data))
    return store, open_store(data)


def test_a_rebuild_reads_the_tables_the_run_recorded_whatever_lake_the_data_dir_names(
    lake, tmp_path, capsys, monkeypatch
):
    """Lake B has feature tables of its own (other values, at the very versions run 1 pinned in lake A)
    and its own registry, whose sources are B's tables. Rebuilding run 1 with LAKEHOUSE_DATA_DIR=B
    must still read A's tables, the ones the run recorded, and match its hash."""
    from lakehouse.ml.reproduce import _local_path

    old = lake["runs"][0]
    tags = MlflowClient(lake["tracking"]).get_run(old).data.tags
    monkeypatch.setenv("MLFLOW_TRACKING_URI", lake["tracking"])
    store_b, registry_b = _another_lake(tmp_path / "lake_b", USERS, range(0, 20), monkeypatch)
    for role, table in (
        ("user_activity", "user_features"),
        ("category_activity", "category_features"),
    ):
        assert (
            registry_b.get_feature_view(role).batch_source.path
            == store_b.uri(table)
            != tags[f"lakehouse.input.{role}.uri"]
        )
        assert store_b.version(table) == int(
            tags[f"lakehouse.input.{role}.version"]
        )  # the pinned version exists in B too

    out = tmp_path / "rebuilt.parquet"
    assert cli(["reproduce", old, "--rebuild", "--out", str(out)]) == 0
    assert tags["lakehouse.training_set.sha256"] in capsys.readouterr().out
    snapshot = pd.read_parquet(
        _local_path(MlflowClient(lake["tracking"]).get_run(old).info.artifact_uri)
        / "training_set"
        / "training_set.parquet"
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), snapshot)

    # A recorded table that is not where the run read it: the error names it and the place, before any join.
    tracking = _store_copy(lake, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    moved = str(tmp_path / "moved" / "user_features")
    _set_tag(tracking, old, "lakehouse.input.user_activity.uri", moved)
    error = _reproduce_fails([old, "--rebuild"], tmp_path / "gone.parquet", capsys)
    assert (
        f"input table user_features is gone: no Delta table at {moved}, where the run read it"
        in error
    )


def test_a_run_logged_before_hash_forms_verifies_in_the_arrow_ipc_form_and_an_unknown_form_is_refused(
    lake, tmp_path, capsys, monkeypatch
):
    """Runs logged before forms were recorded carry no hash_form tag and the digest of the Arrow IPC
    form (what the code logged then): the copied run is made so, then given a form no code defines."""
    from lakehouse.ml.reproduce import _local_path

    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old = lake["runs"][0]
    tracking = _store_copy(lake, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    snapshot = pd.read_parquet(
        _local_path(MlflowClient(lake["tracking"]).get_run(old).info.artifact_uri)
        / "training_set"
        / "training_set.parquet"
    )
    legacy = content_sha256(snapshot, ARROW_IPC)
    _edit_store(tracking, "DELETE FROM tags WHERE run_uuid = ? AND key = ?", (old, HASH_FORM_TAG))
    _set_tag(tracking, old, "lakehouse.training_set.sha256", legacy)
    for flags in ([], ["--rebuild"]):
        assert (
            cli(["reproduce", old, "--out", str(tmp_path / f"legacy{len(flags)}.parquet"), *flags])
            == 0
        )
        assert f"sha256 {legacy} (form {ARROW_IPC}) matches run {old}" in capsys.readouterr().out

    _edit_store(
        tracking,
        "INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
        (HASH_FORM_TAG, "canonical-v9", old),
    )
    error = _reproduce_fails([old], tmp_path / "out.parquet", capsys)
    assert (
        f"run {old}: its training-set hash is in form 'canonical-v9', which this version of lakehouse does not know"
        in error
    )


def test_reproduce_fails_when_an_input_table_or_the_training_set_has_another_row_count(
    lake, tmp_path, capsys, monkeypatch
):
    from deltalake import DeltaTable

    from lakehouse.ml.reproduce import _local_path

    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old = lake["runs"][0]
    tags = MlflowClient(lake["tracking"]).get_run(old).data.tags
    tracking = _store_copy(lake, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)

    # The labels table at the pinned version holds one row fewer than the (copied) run says it logged.
    version = int(tags["lakehouse.input.labels.version"])
    rows = (
        DeltaTable(tags["lakehouse.input.labels.uri"], version=version).to_pyarrow_table().num_rows
    )
    _set_tag(tracking, old, "lakehouse.input.labels.rows", str(rows + 1))
    error = _reproduce_fails([old, "--rebuild"], tmp_path / "out.parquet", capsys)
    assert (
        f"input table training_labels version {version} has {rows} rows, the run logged {rows + 1}"
        in error
    )

    # The training set's row count: the snapshot file holds one row fewer than the run says.
    _set_tag(tracking, old, "lakehouse.input.labels.rows", str(rows))
    snapshot = pd.read_parquet(
        _local_path(MlflowClient(lake["tracking"]).get_run(old).info.artifact_uri)
        / "training_set"
        / "training_set.parquet"
    )
    _set_tag(tracking, old, "lakehouse.training_set.rows", str(len(snapshot) + 1))
    error = _reproduce_fails([old], tmp_path / "out.parquet", capsys)
    assert (
        "snapshot training set differs from the logged one" in error
        and f"rows {len(snapshot)} vs {len(snapshot) + 1}; hash form {CANONICAL_V1})" in error
    )


def test_reproduce_fails_when_the_snapshot_artifact_is_gone_but_rebuilds(
    lake, tmp_path, capsys, monkeypatch
):
    import shutil

    from lakehouse.ml.reproduce import _local_path

    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old = lake["runs"][0]
    tracking = _store_copy(lake, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    # The run's artifacts, copied, without the snapshot; the copied run's artifact location points there.
    artifacts = tmp_path / "artifacts"
    shutil.copytree(
        _local_path(MlflowClient(lake["tracking"]).get_run(old).info.artifact_uri), artifacts
    )
    (artifacts / "training_set" / "training_set.parquet").unlink()
    _edit_store(
        tracking, "UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", (artifacts.as_uri(), old)
    )

    error = _reproduce_fails([old], tmp_path / "out.parquet", capsys)
    assert (
        f"run {old} has no training-set snapshot (training_set/training_set.parquet)" in error
        and "try --rebuild" in error
    )
    # The pinned Delta versions are all there: --rebuild does not need the snapshot.
    assert cli(["reproduce", old, "--rebuild", "--out", str(tmp_path / "rebuilt.parquet")]) == 0
    assert "matches run" in capsys.readouterr().out


def test_training_refuses_labels_and_features_computed_from_different_cleaned_events_versions(
    tmp_path, monkeypatch
):
    """What the model asset calls first (current_inputs): every input at its current version, all from one
    cleaned_events version, or a one-line refusal naming each table and the version it came from."""
    from lakehouse.ml.training_set import MixedInputVersionsError, current_inputs

    store, registry = _another_lake(
        tmp_path / "lake", 60, range(0, 3), monkeypatch
    )  # each table v0, from cleaned_events "v2"
    assert {t.name: t.version for t in current_inputs(store, registry)} == {
        "training_labels": 0,
        "user_features": 0,
        "category_features": 0,
    }

    # user_features recomputed from a newer cleaned_events version; the labels and category features were not.
    store.write_arrow(
        USER_FEATURES, store.read_arrow(USER_FEATURES.name), inputs={"cleaned_events": 3}
    )
    with pytest.raises(MixedInputVersionsError) as refused:
        current_inputs(store, registry)
    assert str(refused.value) == (
        "training refused: its tables do not come from one cleaned_events version "
        "(training_labels v0 from cleaned_events v2, "
        "user_features v1 from cleaned_events v3, category_features v0 from cleaned_events v2); "
        "rematerialize training_labels, user_features, category_features together"
    )


def test_a_training_set_with_a_future_or_stale_feature_row_fails_the_point_in_time_check_and_trains_nothing(
    lake, monkeypatch
):
    """The model asset, through Dagster, on a retrieval that hands some label rows feature rows they could not have had.

    The point-in-time join itself is replaced by one that moves the user_activity feature time of
    five label rows: three one day after their label time (from the future), one to exactly the label
    time (allowed: a feature row stamped at midnight D summarizes the days before D) and one a day
    older than the view's 2-day TTL (stale). The blocking check must count 3 future and 1 stale, and
    nothing may be trained, logged or registered."""
    import lakehouse.ml.training_set as training_set

    real = training_set.historical_features

    def leaky(*args, **kwargs):
        joined = real(*args, **kwargs)
        column = "user_activity__feature_timestamp"
        label_ts = pd.to_datetime(joined["event_timestamp"], utc=True)
        moved = pd.to_datetime(joined[column], utc=True)
        moved.iloc[:3] = label_ts.iloc[:3] + pd.Timedelta(days=1)
        moved.iloc[3] = label_ts.iloc[3]
        moved.iloc[4] = label_ts.iloc[4] - pd.Timedelta(days=3)
        return joined.assign(**{column: moved})

    monkeypatch.setattr(training_set, "historical_features", leaky)
    client = MlflowClient(lake["tracking"])
    runs_before = {
        r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name("purchase_propensity").experiment_id]
        )
    }
    versions_before = {
        v.version for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    }

    result = _materialize("purchase_propensity_model")

    assert not result.success
    (check,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "training_set_point_in_time"
    ]
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert check.metadata["violations"].value == {
        "user_activity": {"rows_with_future_features": 3, "rows_with_features_older_than_ttl": 1}
    }
    assert not result.get_asset_materialization_events()
    assert {
        r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name("purchase_propensity").experiment_id]
        )
    } == runs_before
    assert {
        v.version for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'")
    } == versions_before


def _skew_check(result):
    (evaluation,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "serving_features_match_training"
    ]
    return evaluation


def _feature_line(evaluation, feature: str) -> str:
    (line,) = [
        row
        for row in evaluation.metadata["features"].value.splitlines()
        if row.split("|")[1].split()[:1] == [feature]
    ]
    return line


def test_the_skew_check_is_quiet_on_unshifted_serving_data_and_fires_on_a_shift(lake):
    store, rng, propensity = lake["store"], lake["rng"], lake["propensity"]
    land_feature_days(store, rng, propensity, range(50, 51))
    quiet = _skew_check(_materialize("feast_online_store"))
    assert quiet.passed, quiet.metadata["features"].value
    assert quiet.metadata["max_psi"].value < 0.1
    assert quiet.metadata["serving_rows"].value == USERS
    # Like for like: serving (one as-of time) against the training rows of the newest prediction time.
    assert quiet.metadata["training_rows"].value == USERS
    # The category features are compared by favourite category, with a KS test on their eight values
    # (a row-grain count feature gets no KS).
    assert "(p=" in _feature_line(quiet, "category_views_7d") and "(p=" not in _feature_line(
        quiet, "views_7d"
    )
    assert quiet.metadata["traffic"].value.startswith("none logged yet")

    # The model's service is called (unshifted values), in requests of 40 users, each logged.
    feast_store = open_store(lake["data"])
    entity_rows = recent_entity_rows(store)
    service = feast_store.get_feature_service(FEATURE_SERVICE)
    for start in range(0, len(entity_rows), 40):
        feast_store.get_online_features(
            features=service, entity_rows=entity_rows[start : start + 40]
        )
    assert flush_served_features(feast_store) == USERS

    land_feature_days(store, rng, propensity, range(51, 52), shift=2.0)
    shifted = _skew_check(_materialize("feast_online_store"))
    assert not shifted.passed and shifted.severity == AssetCheckSeverity.ERROR
    assert shifted.metadata["max_psi"].value >= 0.25
    # What was served (before the shift) still matches training: the traffic comparison is its own.
    assert (
        shifted.metadata["traffic_rows"].value == USERS
        and shifted.metadata["traffic_requests"].value == USERS // 40
    )
    assert shifted.metadata["traffic_max_psi"].value < 0.1
    assert "| purchases_30d |" in shifted.metadata["traffic_features"].value
    assert (
        "| purchases_30d |" in shifted.metadata["features"].value
        and "fail" in shifted.metadata["features"].value
    )
    # Every category's views doubled: all eight serving values above the training ones.
    assert _feature_line(shifted, "category_views_7d").endswith("| fail |")
    # The chart is linked into the MLflow UI (a browser opens no file:// link from Dagster's), at the
    # newest registered model's run, and its file is an artifact of that run under the data dir.
    client = MlflowClient(lake["tracking"])
    run_id = lake["runs"][1]
    experiment_id = client.get_experiment_by_name("purchase_propensity").experiment_id
    chart, chart_file = shifted.metadata["chart"].value, shifted.metadata["chart_file"].value
    prefix = f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}/artifacts/serving_skew/serving_skew_"
    assert chart.startswith(prefix) and chart.endswith(".png")
    name = chart.rsplit("/", 1)[-1]
    assert f"serving_skew/{name}" in {a.path for a in client.list_artifacts(run_id, "serving_skew")}
    assert os.path.isfile(chart_file) and chart_file.endswith(name)
    assert chart_file.startswith(str(lake["data"].resolve() / "mlartifacts") + os.sep)


def test_maintenance_keeps_the_registered_run_rebuildable_and_reports_an_unpinned_one_gone(
    lake, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(lake["data"]))
    old, new = lake["runs"]
    MlflowClient(lake["tracking"]).delete_model_version(
        REGISTERED_MODEL, "1"
    )  # run 1 is no longer pinned
    result = _materialize(
        "table_maintenance",
        run_config={
            "ops": {
                "table_maintenance": {
                    "config": {"retention_hours": 0, "min_retention_hours": 0, "keep_runs_days": 0}
                }
            }
        },
    )
    assert result.success
    assert (
        result.asset_materializations_for_node("table_maintenance")[0]
        .metadata["files_vacuumed"]
        .value
        > 0
    )

    assert cli(["reproduce", new, "--rebuild", "--out", str(tmp_path / "new.parquet")]) == 0
    assert cli(["reproduce", old, "--rebuild", "--out", str(tmp_path / "old.parquet")]) == 1
    error = capsys.readouterr().err
    assert "is gone" in error and "vacuumed" in error and "Traceback" not in error
    assert not (tmp_path / "old.parquet").exists()
    # The snapshot does not depend on table versions: the old run's training set is still there.
    assert cli(["reproduce", old, "--out", str(tmp_path / "old.parquet")]) == 0
