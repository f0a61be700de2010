"""Rebuild the training set of an MLflow run from the Delta versions it recorded, and prove it by hash."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lakehouse.feature_store import open_store
from lakehouse.lineage import EXPERIMENT, TrainingLineage, read_lineage
from lakehouse.storage import table_row_count, table_version
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
    for t in lineage.inputs:
        if table_version(t.uri) is None:
            raise ReproductionError(f"input table {t.name} is gone: no Delta table at {t.uri}")
        try:
            rows = table_row_count(t.uri, t.version)
        except Exception as exc:  # deltalake raises several types for a missing or expired version
            raise ReproductionError(f"input table {t.name} version {t.version} is no longer readable at {t.uri}: {exc}") from exc
        if rows != t.rows:
            raise ReproductionError(f"input table {t.name} version {t.version} has {rows} rows, the run logged {t.rows}")


def reproduce(run_id: str, out: Path, tracking_uri: str, data_dir: Path) -> Reproduction:
    """Write the run's training set to `out` (parquet) if its SHA-256 equals the one logged."""
    lineage = load_lineage(tracking_uri, run_id)
    _check_inputs_readable(lineage)
    training_set = build_training_set(open_store(data_dir), lineage.inputs, lineage.feature_service).frame
    sha256 = content_sha256(training_set)
    if sha256 != lineage.training_set_sha256 or len(training_set) != lineage.training_set_rows:
        raise ReproductionError(
            f"run {run_id}: rebuilt training set differs from the logged one "
            f"(sha256 {sha256} vs {lineage.training_set_sha256}, rows {len(training_set)} vs {lineage.training_set_rows}); nothing written"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    training_set.to_parquet(out, index=False)
    return Reproduction(run_id, sha256, len(training_set), out)


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
