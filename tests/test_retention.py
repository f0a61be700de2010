"""Table maintenance keeps exactly the Delta versions that registered models and kept runs read.

Real Delta tables (deltalake) and a real MLflow SQLite store; runs carry the same lineage tags the
training asset logs. Vacuum runs with a zero retention period, the harshest setting.
"""

import os
import time
from datetime import datetime, timezone

import mlflow
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from mlflow.tracking import MlflowClient

from lakehouse.cli import main as cli
from lakehouse.ml.lineage import EXPERIMENT, REGISTERED_MODEL, InputTable, TrainingLineage, log_lineage
from lakehouse.ml.reproduce import ReproductionError, _check_inputs_readable, load_lineage
from lakehouse.ml.retention import LOG_CLEANUP, maintain_lake, pinned_versions


def _versions(uri: str, contents: list[list[int]]) -> None:
    """One overwrite per entry, each in two small files (so compaction has work)."""
    for values in contents:
        half = len(values) // 2
        write_deltalake(uri, pa.table({"x": values[:half]}), mode="overwrite")
        write_deltalake(uri, pa.table({"x": values[half:]}), mode="append")


def _log_run(uri: str, version: int, rows: int, *, register: bool = False, keep: bool = False) -> str:
    lineage = TrainingLineage(
        inputs=(InputTable("labels", "t", uri, version, rows),),
        training_set_sha256="0" * 64,
        training_set_rows=rows,
        feature_service="svc",
        feature_refs=("view:x",),
        feast_project="lakehouse",
    )
    with mlflow.start_run() as run:
        log_lineage(lineage, {"dagster.run_id": "test"})
        if keep:
            mlflow.set_tag("lakehouse.keep", "true")
    if register:
        client = MlflowClient()
        if not client.search_registered_models():
            client.create_registered_model(REGISTERED_MODEL)
        client.create_model_version(REGISTERED_MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return run.info.run_id


@pytest.fixture
def lake(tmp_path, monkeypatch):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment(EXPERIMENT)
    root = tmp_path / "delta"
    uri = str(root / "t")
    # Versions 0-1 hold [1, 2], 2-3 hold [3, 4, 5, 6], 4-5 hold [7, 8]: two commits per content.
    _versions(uri, [[1, 2], [3, 4, 5, 6], [7, 8]])
    yield tracking, root, uri
    mlflow.set_tracking_uri(None)


def _values(uri, version):
    return sorted(DeltaTable(uri, version=version).to_pyarrow_table().column("x").to_pylist())


def test_vacuum_keeps_registered_and_kept_versions_and_loses_the_rest_clearly(lake):
    tracking, root, uri = lake
    registered = _log_run(uri, 1, 2, register=True)
    kept = _log_run(uri, 3, 4, keep=True)
    time.sleep(0.01)
    pins = pinned_versions(tracking, keep_runs_days=0, now=datetime.now(timezone.utc))
    forgotten = _log_run(uri, 4, 1)  # unregistered, not kept, older than 0 days: version 4 is [7]
    assert sorted((p.version, p.reason.split()[0]) for p in pins) == [(1, "model"), (3, "kept")]

    results = maintain_lake(str(root), pins, retention_hours=0)

    (table,) = results
    assert table.files_compacted == 2 and table.kept_versions == (1, 3)
    assert table.files_vacuumed > 0
    assert _values(uri, 1) == [1, 2] and _values(uri, 3) == [3, 4, 5, 6]
    assert _values(uri, None) == [7, 8]  # compacted: same content, one file
    assert len(DeltaTable(uri).file_uris()) == 1
    _check_inputs_readable(load_lineage(tracking, registered))
    _check_inputs_readable(load_lineage(tracking, kept))
    with pytest.raises(ReproductionError, match=r"input table t version 4 is gone: 1 of its 1 data files were vacuumed"):
        _check_inputs_readable(load_lineage(tracking, forgotten))


def test_recent_runs_are_kept_and_a_deleted_model_version_releases_its_versions(lake):
    tracking, _, uri = lake
    run = _log_run(uri, 1, 2, register=True)
    now = datetime.now(timezone.utc)
    assert [(p.version, p.reason) for p in pinned_versions(tracking, 0, now)] == [(1, f"model {REGISTERED_MODEL} v1")]
    # The same run is also young: a 30-day window keeps it a second time, as a kept run.
    assert sorted(p.reason.split()[0] for p in pinned_versions(tracking, 30, now)) == ["kept", "model"]
    MlflowClient(tracking).delete_model_version(REGISTERED_MODEL, "1")
    assert pinned_versions(tracking, 0, now) == []
    assert cli(["keep", run]) == 0
    assert [p.reason for p in pinned_versions(tracking, 0, now)] == [f"kept run {run}"]
    assert cli(["keep", run, "--release"]) == 0
    assert pinned_versions(tracking, 0, now) == []


def test_pinned_versions_survive_log_cleanup_after_maintenance(lake):
    """Checkpoints delete log entries past delta.logRetentionDuration (30 days) unless maintenance turned that off."""
    tracking, root, uri = lake
    unmaintained = str(root.parent / "elsewhere" / "t")  # the control: same history, never maintained
    _versions(unmaintained, [[1, 2], [3, 4, 5, 6], [7, 8]])
    _log_run(uri, 1, 2, register=True)
    maintain_lake(str(root), pinned_versions(tracking, 0, datetime.now(timezone.utc)), retention_hours=0)
    assert DeltaTable(uri).metadata().configuration[LOG_CLEANUP] == "false"

    for table in (uri, unmaintained):
        # Three months pass after a checkpoint; then commits write a new checkpoint, which is when
        # delta-rs (like Spark) deletes the expired log entries before the old one.
        DeltaTable(table).alter.set_table_properties({"delta.checkpointInterval": "2"})
        DeltaTable(table).create_checkpoint()
        long_ago = time.time() - 90 * 86400
        for name in os.listdir(f"{table}/_delta_log"):
            os.utime(f"{table}/_delta_log/{name}", (long_ago, long_ago))
        for value in range(3):
            write_deltalake(table, pa.table({"x": [100 + value]}), mode="overwrite")
        assert any(name.endswith(".checkpoint.parquet") for name in os.listdir(f"{table}/_delta_log"))
    assert _values(uri, 1) == [1, 2]
    with pytest.raises(Exception, match="No files in log segment"):
        _values(unmaintained, 1)


def test_keeping_an_unknown_run_fails_clearly_and_pins_nothing(lake, capsys):
    tracking, _, uri = lake
    _log_run(uri, 1, 2)
    unknown = "0" * 32
    assert cli(["keep", unknown]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: run {unknown}:") and "Traceback" not in err
    assert pinned_versions(tracking, 0, datetime.now(timezone.utc)) == []
