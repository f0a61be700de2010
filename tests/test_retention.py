"""Table maintenance keeps exactly the Delta versions that registered models and kept runs read.

Real Delta tables (deltalake) and a real MLflow SQLite store; runs carry the same lineage tags the
training asset logs. Vacuum runs with a zero retention period, the harshest setting, which the
tests allow explicitly (min_retention_hours=0): nothing else writes to their tables.
"""

import os
import re
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from assets.maintenance import MaintenanceConfig, table_maintenance
from lakehouse.cli import main as cli
from lakehouse.ml.lineage import (
    EXPERIMENT,
    REGISTERED_MODEL,
    InputTable,
    TrainingLineage,
    log_lineage,
)
from lakehouse.ml.reproduce import ReproductionError, _check_inputs_readable, load_lineage
from lakehouse.ml.retention import LOG_CLEANUP, PinListingError, maintain_lake, pinned_versions
from lakehouse.ml.serving_skew import serving_model
from resources.delta import DeltaStorage
from resources.mlflow import MlflowTracking


def _versions(uri: str, contents: list[list[int]]) -> None:
    """One overwrite per entry, each in two small files (so compaction has work)."""
    for values in contents:
        half = len(values) // 2
        write_deltalake(uri, pa.table({"x": values[:half]}), mode="overwrite")
        write_deltalake(uri, pa.table({"x": values[half:]}), mode="append")


def _log_run(
    uri: str, version: int, rows: int, *, register: bool = False, keep: bool = False
) -> str:
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
        client.create_model_version(
            REGISTERED_MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
        )
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


@pytest.fixture
def pages_of_two(monkeypatch):
    """A store that answers every search with at most two results: more pins than one page holds."""

    def capped(search):
        def search_capped(self, *args, max_results, **kwargs):
            return search(self, *args, max_results=min(max_results, 2), **kwargs)

        return search_capped

    for name in ("search_model_versions", "search_runs"):
        monkeypatch.setattr(MlflowClient, name, capped(getattr(MlflowClient, name)))


def _maintain(tracking: str, root, **config):
    """The table_maintenance asset, run as the schedule runs it."""
    mlflow_tracking = MlflowTracking(
        tracking_uri=tracking, artifact_root=str(Path(root).parent / "artifacts")
    )
    return table_maintenance(
        MaintenanceConfig(keep_runs_days=0, **config),
        delta=DeltaStorage(root=str(root)),
        mlflow_tracking=mlflow_tracking,
    )


def _files(root) -> set[Path]:
    return set(Path(root).rglob("*"))


def test_vacuum_keeps_registered_and_kept_versions_and_loses_the_rest_clearly(lake):
    tracking, root, uri = lake
    registered = _log_run(uri, 1, 2, register=True)
    kept = _log_run(uri, 3, 4, keep=True)
    time.sleep(0.01)
    pins = pinned_versions(tracking, keep_runs_days=0, now=datetime.now(timezone.utc))
    forgotten = _log_run(uri, 4, 1)  # unregistered, not kept, older than 0 days: version 4 is [7]
    assert sorted((p.version, p.reason.split()[0]) for p in pins) == [(1, "model"), (3, "kept")]

    results = maintain_lake(str(root), pins, retention_hours=0, min_retention_hours=0)

    (table,) = results
    assert table.files_compacted == 2 and table.kept_versions == (1, 3)
    assert table.files_vacuumed > 0
    assert _values(uri, 1) == [1, 2] and _values(uri, 3) == [3, 4, 5, 6]
    assert _values(uri, None) == [7, 8]  # compacted: same content, one file
    assert len(DeltaTable(uri).file_uris()) == 1
    _check_inputs_readable(load_lineage(tracking, registered))
    _check_inputs_readable(load_lineage(tracking, kept))
    with pytest.raises(
        ReproductionError,
        match=r"input table t version 4 is gone: 1 of its 1 data files were vacuumed",
    ):
        _check_inputs_readable(load_lineage(tracking, forgotten))


def test_recent_runs_are_kept_and_a_deleted_model_version_releases_its_versions(lake):
    tracking, _, uri = lake
    run = _log_run(uri, 1, 2, register=True)
    now = datetime.now(timezone.utc)
    assert [(p.version, p.reason) for p in pinned_versions(tracking, 0, now)] == [
        (1, f"model {REGISTERED_MODEL} v1")
    ]
    # The same run is also young: a 30-day window keeps it a second time, as a kept run.
    assert sorted(p.reason.split()[0] for p in pinned_versions(tracking, 30, now)) == [
        "kept",
        "model",
    ]
    MlflowClient(tracking).delete_model_version(REGISTERED_MODEL, "1")
    assert pinned_versions(tracking, 0, now) == []
    assert cli(["keep", run]) == 0
    assert [p.reason for p in pinned_versions(tracking, 0, now)] == [f"kept run {run}"]
    assert cli(["keep", run, "--release"]) == 0
    assert pinned_versions(tracking, 0, now) == []


def test_pinned_versions_survive_log_cleanup_after_maintenance(lake):
    """Checkpoints delete log entries past delta.logRetentionDuration (30 days) unless maintenance turned that off."""
    tracking, root, uri = lake
    unmaintained = str(
        root.parent / "elsewhere" / "t"
    )  # the control: same history, never maintained
    _versions(unmaintained, [[1, 2], [3, 4, 5, 6], [7, 8]])
    _log_run(uri, 1, 2, register=True)
    maintain_lake(
        str(root),
        pinned_versions(tracking, 0, datetime.now(timezone.utc)),
        retention_hours=0,
        min_retention_hours=0,
    )
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
        assert any(
            name.endswith(".checkpoint.parquet") for name in os.listdir(f"{table}/_delta_log")
        )
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


def test_pins_past_the_first_page_survive_and_only_unpinned_versions_are_vacuumed(
    lake, pages_of_two
):
    tracking, root, _ = lake
    uri = str(root / "u")
    for value in range(8):  # version v holds [v], in a file of its own
        write_deltalake(uri, pa.table({"x": [value]}), mode="overwrite")
    for version in (0, 1, 2):  # three model versions: two pages
        _log_run(uri, version, 1, register=True)
    for version in (3, 4):
        _log_run(uri, version, 1, keep=True)
    _log_run(uri, 5, 1)  # neither registered nor kept; six runs: three pages
    unpinned = DeltaTable(uri, version=5).file_uris() + DeltaTable(uri, version=6).file_uris()

    pins = pinned_versions(tracking, 0, datetime.now(timezone.utc))
    assert sorted(p.version for p in pins) == [0, 1, 2, 3, 4]
    maintain_lake(str(root), pins, retention_hours=0, min_retention_hours=0)

    assert [_values(uri, version) for version in range(5)] == [[0], [1], [2], [3], [4]]
    assert unpinned and not any(os.path.exists(f) for f in unpinned)
    assert _values(uri, None) == [7]


def test_the_serving_model_is_the_newest_version_with_a_run_even_pages_away(lake, pages_of_two):
    tracking, _, uri = lake
    newest_run = [_log_run(uri, 1, 2, register=True) for _ in range(3)][-1]
    client = MlflowClient(tracking)
    for _ in range(
        2
    ):  # newer versions without a run (registered from a path), which fill the first page
        client.create_model_version(REGISTERED_MODEL, source=str(Path(uri).parent / "model"))
    assert serving_model(client) == (newest_run, "3")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("cause", ["unreachable server", "failing second page"])
def test_maintenance_touches_no_file_when_the_pins_cannot_all_be_listed(
    lake, pages_of_two, monkeypatch, cause
):
    tracking, root, uri = lake
    for version in (1, 3, 5):
        _log_run(uri, version, 2, register=True)
    if cause == "unreachable server":
        tracking = f"http://127.0.0.1:{_closed_port()}"
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        detail = "Connection refused"
    else:
        search = MlflowClient.search_model_versions

        def failing(self, *args, page_token=None, **kwargs):
            if page_token:
                raise MlflowException("the tracking server went away")
            return search(self, *args, page_token=page_token, **kwargs)

        monkeypatch.setattr(MlflowClient, "search_model_versions", failing)
        detail = "the tracking server went away"
    before = _files(root)

    with pytest.raises(
        PinListingError,
        match=rf"cannot list every pinned Delta version from MLflow at {re.escape(tracking)}.*{detail}",
    ):
        _maintain(tracking, root, retention_hours=0, min_retention_hours=0)

    assert _files(root) == before  # not even compacted
    assert _values(uri, 0) == [1]


def test_a_retention_shorter_than_a_write_in_flight_is_refused_before_any_table_is_touched(lake):
    tracking, root, uri = lake
    _log_run(uri, 1, 2, register=True)
    before = _files(root)

    with pytest.raises(
        ValueError, match=r"retention_hours=0 is below the 1 h a write can be in flight"
    ):
        _maintain(tracking, root, retention_hours=0)
    with pytest.raises(ValueError, match=r"retention_hours=0 is below the 1 h"):
        maintain_lake(str(root), [], retention_hours=0)
    assert _files(root) == before

    # The floor itself is allowed; every file is younger than it, so nothing goes.
    assert _maintain(tracking, root, retention_hours=1).metadata["files_vacuumed"].value == 0
    assert _values(uri, 0) == [1]


def test_a_registered_run_pins_the_cleaned_and_raw_versions_its_features_were_computed_from(lake):
    from deltalake import CommitProperties

    from lakehouse.tables.storage import INPUTS_KEY

    tracking, root, _ = lake

    def commit(table, values, inputs):
        """An overwrite that records its inputs the way the assets' commits do."""
        properties = CommitProperties(
            custom_metadata={INPUTS_KEY: f'{{"{inputs[0]}": {inputs[1]}}}'} if inputs else None
        )
        write_deltalake(
            str(root / table),
            pa.table({"x": values}),
            mode="overwrite",
            commit_properties=properties,
        )
        return DeltaTable(str(root / table)).version()

    raw = [commit("raw_events", [i], None) for i in range(3)]  # versions 0, 1, 2
    cleaned = [commit("cleaned_events", [10 + i], ("raw_events", raw[i])) for i in range(3)]
    features = commit(
        "user_features", [100], ("cleaned_events", cleaned[1])
    )  # built from cleaned v1, itself from raw v1
    _log_run(str(root / "user_features"), features, 1, register=True)

    pins = pinned_versions(tracking, keep_runs_days=0, now=datetime.now(timezone.utc))
    assert {(Path(p.uri).name, p.version) for p in pins} == {
        ("user_features", 0),
        ("cleaned_events", 1),
        ("raw_events", 1),
    }
    maintain_lake(str(root), pins, retention_hours=0, min_retention_hours=0)
    assert _values(str(root / "cleaned_events"), 1) == [11] and _values(
        str(root / "raw_events"), 1
    ) == [1]
    for table in ("raw_events", "cleaned_events"):  # the unpinned old version is gone
        assert not any(
            Path(f.removeprefix("file://")).exists()
            for f in DeltaTable(str(root / table), version=0).file_uris()
        ), table
