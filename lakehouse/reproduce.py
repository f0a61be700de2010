"""The training set of an MLflow run, from its snapshot or rebuilt from the Delta versions it recorded.

Either way the frame is verified against the SHA-256 the run logged before anyone sees it:
- from the snapshot: the parquet artifact the run logged (survives any table maintenance);
- `rebuild=True`: the same point-in-time retrieval through the Feast offline store, every source
  pinned to its recorded version. Equal hashes prove the pipeline deterministic; it needs those
  versions readable, which table maintenance guarantees for registered and kept runs only.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lakehouse.feature_store import feature_refs, open_store
from lakehouse.lineage import EXPERIMENT, SNAPSHOT_ARTIFACT, TrainingLineage, read_lineage
from lakehouse.storage import read_dataset, table_version
from lakehouse.training import content_sha256
from lakehouse.training_set import build_training_set


class ReproductionError(Exception):
    """The run's training set cannot be rebuilt as it was; the message says why."""


@dataclass(frozen=True)
class Reproduction:
    run_id: str
    sha256: str
    rows: int
    out: Path
    rebuilt: bool


def load_lineage(tracking_uri: str, run_id: str) -> TrainingLineage:
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ReproductionError(f"no MLflow run {run_id!r} in {tracking_uri}") from exc
    try:
        return read_lineage(run)
    except LookupError as exc:
        raise ReproductionError(f"run {run_id}: {exc}") from exc


def _check_inputs_readable(lineage: TrainingLineage) -> None:
    """Every input at its recorded version: the log entry, every data file, the row count."""
    for t in lineage.inputs:
        if table_version(t.uri) is None:
            raise ReproductionError(f"input table {t.name} is gone: no Delta table at {t.uri}")
        try:
            dataset = read_dataset(t.uri, t.version)
        except Exception as exc:  # deltalake raises several types for a version whose log entries are gone
            raise ReproductionError(f"input table {t.name} version {t.version} is no longer in its Delta log at {t.uri}: {exc}") from exc
        missing = [f.path for f in dataset.filesystem.get_file_info(dataset.files) if f.type == pafs.FileType.NotFound]
        if missing:
            raise ReproductionError(
                f"input table {t.name} version {t.version} is gone: {len(missing)} of its {len(dataset.files)} data files were "
                f"vacuumed (only versions pinned by a registered model or a kept run survive table maintenance); "
                f"the run's snapshot can still be returned without --rebuild"
            )
        rows = dataset.count_rows()
        if rows != t.rows:
            raise ReproductionError(f"input table {t.name} version {t.version} has {rows} rows, the run logged {t.rows}")


def _snapshot(run_id: str, tracking_uri: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = MlflowClient(tracking_uri).download_artifacts(run_id, SNAPSHOT_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise ReproductionError(f"run {run_id} has no training-set snapshot ({SNAPSHOT_ARTIFACT}): {exc}; try --rebuild") from exc
        return pd.read_parquet(path)


def _rebuild(run_id: str, lineage: TrainingLineage, data_dir: Path) -> pd.DataFrame:
    store = open_store(data_dir)
    current = tuple(feature_refs(store, lineage.feature_service))
    if lineage.feature_refs and current != lineage.feature_refs:
        raise ReproductionError(
            f"run {run_id}: feature service {lineage.feature_service} now serves {list(current)}, "
            f"the run used {list(lineage.feature_refs)}; restore the service definition to rebuild"
        )
    _check_inputs_readable(lineage)
    return build_training_set(store, lineage.inputs, lineage.feature_service).frame


def training_set_of(run_id: str, tracking_uri: str, data_dir: Path, rebuild: bool = False) -> pd.DataFrame:
    """The run's training set, verified against the SHA-256 and row count it logged."""
    return _verified_training_set(run_id, tracking_uri, data_dir, rebuild)[0]


def _verified_training_set(run_id: str, tracking_uri: str, data_dir: Path, rebuild: bool) -> tuple[pd.DataFrame, str]:
    lineage = load_lineage(tracking_uri, run_id)
    frame = _rebuild(run_id, lineage, data_dir) if rebuild else _snapshot(run_id, tracking_uri)
    sha256 = content_sha256(frame)
    if sha256 != lineage.training_set_sha256 or len(frame) != lineage.training_set_rows:
        source = "rebuilt" if rebuild else "snapshot"
        raise ReproductionError(
            f"run {run_id}: {source} training set differs from the logged one "
            f"(sha256 {sha256} vs {lineage.training_set_sha256}, rows {len(frame)} vs {lineage.training_set_rows})"
        )
    return frame, sha256


def reproduce(run_id: str, out: Path, tracking_uri: str, data_dir: Path, rebuild: bool = False) -> Reproduction:
    """Write the run's verified training set to `out` (parquet); nothing is written if it cannot be verified."""
    frame, sha256 = _verified_training_set(run_id, tracking_uri, data_dir, rebuild)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return Reproduction(run_id, sha256, len(frame), out, rebuild)


def training_runs(tracking_uri: str) -> list[dict]:
    """Every finished training run of the experiment, newest first, with its hash and input versions."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    rows = []
    finished = "attributes.status = 'FINISHED'"
    for run in client.search_runs([experiment.experiment_id], filter_string=finished, order_by=["attributes.start_time DESC"]):
        try:
            lineage = read_lineage(run)
        except LookupError:
            continue
        rows.append(
            {
                "run_id": run.info.run_id,
                "started": run.info.start_time,
                "training_set_sha256": lineage.training_set_sha256,
                "training_set_rows": lineage.training_set_rows,
                "feature_service": lineage.feature_service,
                "inputs": {t.name: t.version for t in lineage.inputs},
                "test_auc": run.data.metrics.get("test_auc"),
            }
        )
    return rows
