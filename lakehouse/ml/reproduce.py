"""The training set of an MLflow run, from its snapshot or rebuilt from the Delta versions it recorded.

Either way the frame is verified against the SHA-256 the run logged, in the byte form the run
recorded (lakehouse.ml.fingerprint), before anyone sees it:
- from the snapshot: the parquet artifact the run logged (survives any table maintenance);
- `rebuild=True`: the same point-in-time retrieval through the Feast offline store, reading the
  tables the run recorded (URIs in its lineage, not the registry's source paths, which belong to
  whichever lake LAKEHOUSE_DATA_DIR names now), each at its recorded version. The registry gives
  only the definitions (join keys, TTLs), checked against the feature references the run recorded.
  Equal hashes prove the pipeline deterministic; it needs those versions readable, which table
  maintenance guarantees for registered and kept runs only.

This module is what `lakehouse runs` and `lakehouse reproduce` import, so it imports nothing heavy at
module level: `import mlflow` alone takes seconds (it pulls in pandas, polars, pyspark, scipy and
FastAPI), Feast several more, and listing runs needs none of them. For the default tracking store, a
local SQLite file, runs are read with the standard library (see `_LocalStore`); any other store goes
through `MlflowClient`.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lakehouse.config import public_uri
from lakehouse.ml.fingerprint import (
    FORMS,
    content_sha256,
)  # pandas and Arrow only once a hash is taken
from lakehouse.ml.lineage import EXPERIMENT, SNAPSHOT_ARTIFACT, TrainingLineage

if TYPE_CHECKING:
    import pandas as pd


class ReproductionError(Exception):
    """The run's training set cannot be rebuilt as it was; the message says why."""


@dataclass(frozen=True)
class Reproduction:
    run_id: str
    sha256: str
    hash_form: str
    rows: int
    out: Path
    rebuilt: bool


@dataclass(frozen=True)
class _StoredRun:
    """The parts of an MLflow run this module reads, whichever way it was read."""

    run_id: str
    start_time: int | None
    artifact_uri: str | None
    tags: dict[str, str]
    metrics: dict[str, float]

    @classmethod
    def of(cls, run) -> _StoredRun:  # an mlflow.entities.Run
        return cls(
            run.info.run_id,
            run.info.start_time,
            run.info.artifact_uri,
            run.data.tags,
            run.data.metrics,
        )


class _NotReadableHere(Exception):
    """The store is not one `_LocalStore` reads faithfully; ask MlflowClient instead."""


class _LocalStore:
    """Read-only, standard-library access to an MLflow SQLite tracking store: the runs of the experiment.

    The same queries MlflowClient.get_run / get_experiment_by_name + search_runs make, without the
    seconds `import mlflow` costs. Only used for a schema revision checked to read the same
    (SCHEMA_REVISION, the MLflow version uv.lock pins; tests/test_cli_imports.py compares the two
    ways on a real store); any other revision, workspaces, or any SQLite error fall back to MlflowClient.
    """

    # alembic_version of a store created by MLflow 3.17; update it (and rerun the test) when MLflow moves.
    SCHEMA_REVISION = "dc11669786a5"
    # MlflowClient.search_runs returns one page of this many runs (SEARCH_MAX_RESULTS_DEFAULT).
    MAX_RESULTS = 1000

    def __init__(self, db: Path):
        self.db = db

    @classmethod
    def of(cls, tracking_uri: str) -> _LocalStore | None:
        """The local store behind `tracking_uri`, or None when only MlflowClient can read it."""
        if not tracking_uri.startswith("sqlite:///") or "?" in tracking_uri:
            return None
        if os.environ.get("MLFLOW_WORKSPACE") or os.environ.get(
            "MLFLOW_ENABLE_WORKSPACES", ""
        ).lower() in ("true", "1"):
            return None  # workspace scoping is MLflow's to apply
        return cls(Path(tracking_uri.removeprefix("sqlite:///")))

    def _runs(self, where: str, params: tuple, order_limit: str = "") -> list[_StoredRun]:
        """Runs matching `where` (over `runs r`) with their tags and latest metrics, read in one transaction."""
        try:
            # mode=ro: never create the file or take a write lock (MlflowClient would create and migrate it).
            conn = sqlite3.connect(f"{self.db.resolve().as_uri()}?mode=ro", uri=True)
            try:
                conn.execute(
                    "BEGIN"
                )  # one snapshot for the three queries, even while a run is being logged
                if conn.execute("SELECT version_num FROM alembic_version").fetchall() != [
                    (self.SCHEMA_REVISION,)
                ]:
                    raise _NotReadableHere(
                        f"{self.db} is not at schema revision {self.SCHEMA_REVISION}"
                    )
                found = conn.execute(
                    f"SELECT r.run_uuid, r.start_time, r.artifact_uri FROM runs r WHERE {where} {order_limit}",
                    params,
                ).fetchall()
                tag_rows = conn.execute(
                    "SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid "
                    f"WHERE {where}",
                    params,
                ).fetchall()
                metric_rows = conn.execute(
                    "SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m "
                    f"JOIN runs r ON r.run_uuid = m.run_uuid WHERE {where}",
                    params,
                ).fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _NotReadableHere(str(exc)) from exc
        tags: dict[str, dict[str, str]] = {run_id: {} for run_id, _, _ in found}
        metrics: dict[str, dict[str, float]] = {run_id: {} for run_id, _, _ in found}
        for run_id, key, value in tag_rows:
            if run_id in tags:  # `where` without the limit can match more runs than `found`
                tags[run_id][key] = value
        for run_id, key, value, is_nan in metric_rows:
            if run_id in metrics:
                metrics[run_id][key] = float("nan") if is_nan else value
        return [
            _StoredRun(run_id, start, uri, tags[run_id], metrics[run_id])
            for run_id, start, uri in found
        ]

    def get_run(self, run_id: str) -> _StoredRun | None:
        if not self.db.exists():
            return None
        # get_run returns deleted runs too.
        runs = self._runs("r.run_uuid = ?", (run_id,))
        return runs[0] if runs else None

    def finished_runs(self, experiment: str) -> list[_StoredRun]:
        """search_runs(filter "status = 'FINISHED'", active runs only, order "start_time DESC"), first page."""
        if not self.db.exists():
            return []  # MlflowClient would create an empty store here first; nothing to list either way
        where = (
            "r.experiment_id IN (SELECT experiment_id FROM experiments WHERE name = ?) "
            "AND r.status = 'FINISHED' AND r.lifecycle_stage = 'active'"
        )
        # MLflow sorts nulls last and breaks ties by run id.
        order = (
            f"ORDER BY r.start_time IS NULL, r.start_time DESC, r.run_uuid LIMIT {self.MAX_RESULTS}"
        )
        return self._runs(where, (experiment,), order)


def _local_path(artifact_uri: str | None) -> Path | None:
    """The directory behind a local artifact URI (file:// or a plain path), or None for a remote one."""
    if not artifact_uri:
        return None
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and not parts.query:
        from urllib.request import (
            url2pathname,
        )  # imported here: it brings http.client and email, `lakehouse runs` needs neither

        return Path(url2pathname(parts.path))
    if not parts.scheme and artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


def _stored_run(tracking_uri: str, run_id: str) -> _StoredRun:
    local = _LocalStore.of(tracking_uri)
    if local is not None:
        try:
            run = local.get_run(run_id)
        except _NotReadableHere:
            pass
        else:
            if run is None:
                raise ReproductionError(f"no MLflow run {run_id!r} in {public_uri(tracking_uri)}")
            return run
    # imported here: mlflow costs seconds to import and the local store above does not need it
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return _StoredRun.of(MlflowClient(tracking_uri).get_run(run_id))
    except MlflowException as exc:
        raise ReproductionError(f"no MLflow run {run_id!r} in {public_uri(tracking_uri)}") from exc


def _lineage_of(run: _StoredRun) -> TrainingLineage:
    try:
        return TrainingLineage.from_tags(run.tags)
    except LookupError as exc:
        raise ReproductionError(f"run {run.run_id}: {exc}") from exc


def load_lineage(tracking_uri: str, run_id: str) -> TrainingLineage:
    return _lineage_of(_stored_run(tracking_uri, run_id))


def _check_inputs_readable(lineage: TrainingLineage) -> None:
    """Every input at its recorded version: the log entry, every data file, the row count."""
    import pyarrow.fs as pafs

    from lakehouse.tables.storage import read_dataset, table_version

    for t in lineage.inputs:
        try:
            version = table_version(t.uri)
        except (
            Exception
        ) as exc:  # deltalake raises several types for a store it cannot reach or read
            raise ReproductionError(
                f"input table {t.name} cannot be read at {t.uri}, where the run read it: {exc}"
            ) from exc
        if version is None:
            raise ReproductionError(
                f"input table {t.name} is gone: no Delta table at {t.uri}, where the run read it"
            )
        try:
            dataset = read_dataset(t.uri, t.version)
        except (
            Exception
        ) as exc:  # deltalake raises several types for a version whose log entries are gone
            raise ReproductionError(
                f"input table {t.name} version {t.version} is no longer in its Delta log at {t.uri}: {exc}"
            ) from exc
        missing = [
            f.path
            for f in dataset.filesystem.get_file_info(dataset.files)
            if f.type == pafs.FileType.NotFound
        ]
        if missing:
            raise ReproductionError(
                f"input table {t.name} version {t.version} is gone: {len(missing)} of its "
                f"{len(dataset.files)} data files were vacuumed (only versions pinned by a registered model or "
                "a kept run survive table maintenance); "
                f"the run's snapshot can still be returned without --rebuild"
            )
        rows = dataset.count_rows()
        if rows != t.rows:
            raise ReproductionError(
                f"input table {t.name} version {t.version} has {rows} rows, the run logged {t.rows}"
            )


def _snapshot(run: _StoredRun, tracking_uri: str) -> pd.DataFrame:
    import pandas as pd

    local = _local_path(run.artifact_uri)
    if local is not None and _LocalStore.of(tracking_uri) is not None:
        # A local artifact store: read the file where it is instead of copying it (what download_artifacts does).
        path = local / SNAPSHOT_ARTIFACT
        try:
            return pd.read_parquet(path)
        except OSError as exc:
            raise ReproductionError(
                f"run {run.run_id} has no training-set snapshot ({SNAPSHOT_ARTIFACT}): {exc}; try --rebuild"
            ) from exc
    # imported here: mlflow costs seconds to import and a local artifact store does not need it
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = MlflowClient(tracking_uri).download_artifacts(run.run_id, SNAPSHOT_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise ReproductionError(
                f"run {run.run_id} has no training-set snapshot ({SNAPSHOT_ARTIFACT}): {exc}; try --rebuild"
            ) from exc
        return pd.read_parquet(path)


def _rebuild(run_id: str, lineage: TrainingLineage, data_dir: Path) -> pd.DataFrame:
    """The recorded tables at their recorded versions, joined by the registry's definition of the service."""
    # imported here: Feast (through both modules) costs several seconds, and only --rebuild needs it
    from feast.errors import FeatureServiceNotFoundException

    from lakehouse.features.feature_store import feature_refs, open_store
    from lakehouse.ml.training_set import build_training_set

    _check_inputs_readable(lineage)
    store = open_store(data_dir)
    try:
        current = tuple(feature_refs(store, lineage.feature_service))
    except FeatureServiceNotFoundException as exc:
        raise ReproductionError(
            f"run {run_id}: feature service {lineage.feature_service} is not in the Feast registry of project "
            f"{store.project} under {data_dir} (the run used project {lineage.feast_project}); "
            "apply the feature repo there to rebuild"
        ) from exc
    if lineage.feature_refs and current != lineage.feature_refs:
        raise ReproductionError(
            f"run {run_id}: feature service {lineage.feature_service} now serves {list(current)}, "
            f"the run used {list(lineage.feature_refs)}; restore the service definition to rebuild"
        )
    return build_training_set(store, lineage.inputs, lineage.feature_service).frame


def training_set_of(
    run_id: str, tracking_uri: str, data_dir: Path, rebuild: bool = False
) -> pd.DataFrame:
    """The run's training set, verified against the SHA-256 (in the run's hash form) and row count it logged."""
    return _verified_training_set(run_id, tracking_uri, data_dir, rebuild)[0]


def _verified_training_set(
    run_id: str, tracking_uri: str, data_dir: Path, rebuild: bool
) -> tuple[pd.DataFrame, TrainingLineage]:
    run = _stored_run(tracking_uri, run_id)
    lineage = _lineage_of(run)
    form = lineage.training_set_hash_form
    if form not in FORMS:
        raise ReproductionError(
            f"run {run_id}: its training-set hash is in form {form!r}, which this version of lakehouse does not know "
            f"(it knows {', '.join(FORMS)}); verify it with the version that logged it"
        )
    frame = _rebuild(run_id, lineage, data_dir) if rebuild else _snapshot(run, tracking_uri)
    sha256 = content_sha256(frame, form)
    if sha256 != lineage.training_set_sha256 or len(frame) != lineage.training_set_rows:
        source = "rebuilt" if rebuild else "snapshot"
        raise ReproductionError(
            f"run {run_id}: {source} training set differs from the logged one "
            f"(sha256 {sha256} vs {lineage.training_set_sha256}, rows {len(frame)} vs "
            f"{lineage.training_set_rows}; hash form {form})"
        )
    return frame, lineage


def reproduce(
    run_id: str, out: Path, tracking_uri: str, data_dir: Path, rebuild: bool = False
) -> Reproduction:
    """Write the run's verified training set to `out` (parquet); nothing is written if it cannot be verified."""
    frame, lineage = _verified_training_set(run_id, tracking_uri, data_dir, rebuild)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return Reproduction(
        run_id,
        lineage.training_set_sha256,
        lineage.training_set_hash_form,
        len(frame),
        out,
        rebuild,
    )


def _finished_runs(tracking_uri: str) -> list[_StoredRun]:
    local = _LocalStore.of(tracking_uri)
    if local is not None:
        try:
            return local.finished_runs(EXPERIMENT)
        except _NotReadableHere:
            pass
    # imported here: mlflow costs seconds to import and the local store above does not need it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    finished = "attributes.status = 'FINISHED'"
    return [
        _StoredRun.of(run)
        for run in client.search_runs(
            [experiment.experiment_id],
            filter_string=finished,
            order_by=["attributes.start_time DESC"],
        )
    ]


def training_runs(tracking_uri: str) -> list[dict]:
    """Every finished training run of the experiment, newest first, with its hash and input versions."""
    rows = []
    for run in _finished_runs(tracking_uri):
        try:
            lineage = TrainingLineage.from_tags(run.tags)
        except LookupError:
            continue
        rows.append(
            {
                "run_id": run.run_id,
                "started": run.start_time,
                "training_set_sha256": lineage.training_set_sha256,
                "training_set_hash_form": lineage.training_set_hash_form,
                "training_set_rows": lineage.training_set_rows,
                "feature_service": lineage.feature_service,
                "inputs": {t.name: t.version for t in lineage.inputs},
                "test_auc": run.metrics.get("test_auc"),
            }
        )
    return rows
