"""Table maintenance that keeps reproducibility: compact small files, vacuum old ones, never a pinned version.

A Delta version is pinned while a training run that read it is worth rebuilding:
- every version of a registered model pins its run (delete the model version to release it);
- a kept run: an active run of the experiment tagged `lakehouse.keep=true` (`lakehouse keep RUN_ID`),
  or started within the last `keep_runs_days`.
Vacuum removes the data files that neither the current version nor a pinned one references, once
they are older than the retention period; files of every other old version go, and time travel to
it fails (reproduction says so). Expired-log cleanup is switched off on every table, because
checkpoints otherwise delete log entries older than 30 days, and with them the pinned versions.

Limits: MLflow pages by offset. A model version or run deleted while the pins are being listed
shifts the later pages back by one, so the result that slides onto an already-read page is missed,
and the versions only it pins are vacuumed that night.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import pyarrow.fs as pafs
from deltalake import DeltaTable

from lakehouse.config import public_uri
from lakehouse.ml.lineage import EXPERIMENT, TAG, TableVersion, read_lineage, upstream_of
from lakehouse.tables.storage import with_commit_retries

if TYPE_CHECKING:
    from mlflow.store.entities import PagedList

T = TypeVar("T")

KEEP_TAG = f"{TAG}.keep"
# Spark's and delta-rs' checkpoints delete log entries older than delta.logRetentionDuration unless this is off.
LOG_CLEANUP = "delta.enableExpiredLogCleanup"
# Results per MLflow search request: within every store's limit (runs 50,000, model versions
# 200,000 on the file and SQL stores and the server), and small enough for one HTTP response.
PAGE_SIZE = 1000
# Files younger than this may belong to a write still in flight; vacuum never goes below it unless told.
MIN_RETENTION_HOURS = 1


class PinListingError(RuntimeError):
    """The pins could not all be listed; vacuuming without one would delete a version a model needs."""


def every_result(search: Callable[..., PagedList[T]], *args, **kwargs) -> Iterator[T]:
    """Every result of an MLflow search, page after page: a single call stops silently at its max_results."""
    token = None
    while True:
        page = search(*args, max_results=PAGE_SIZE, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:  # None from local stores, "" from a server
            return


@dataclass(frozen=True)
class Pin:
    uri: str
    version: int
    reason: str  # who needs it: "model purchase_propensity v3" or "kept run <id>"


def pinned_versions(tracking_uri: str, keep_runs_days: int, now: datetime) -> list[Pin]:
    """Every (table, version) that a registered model version or a kept run read, directly or upstream.

    A run's inputs pin their versions, and so does every table version they were computed from
    (cleaned_events, raw_events: see lakehouse.ml.lineage.upstream_of), so the run stays
    traceable, and rebuildable, down to the raw lines.
    """
    from mlflow.tracking import (
        MlflowClient,
    )  # here: every Dagster process imports this module, few call it

    client = MlflowClient(tracking_uri)
    pins: list[Pin] = []
    upstream: dict[tuple[str, int], list[TableVersion]] = {}  # runs share their input versions

    def pin_run(run_id: str, reason: str) -> None:
        try:
            lineage = read_lineage(client.get_run(run_id))
        except LookupError:  # a run logged by something other than the training asset
            return
        for t in lineage.inputs:
            if (t.uri, t.version) not in upstream:
                upstream[(t.uri, t.version)] = upstream_of(t.uri, t.version)
            pins.extend(Pin(u.uri, u.version, reason) for u in upstream[(t.uri, t.version)])

    try:
        # Ordered by what never changes, so that a version updated mid-listing keeps its place in the pages.
        order = ["creation_timestamp ASC", "name ASC", "version_number ASC"]
        for mv in every_result(
            client.search_model_versions, order_by=order
        ):  # every version of every registered model
            if mv.run_id:
                pin_run(mv.run_id, f"model {mv.name} v{mv.version}")
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            since = int((now - timedelta(days=keep_runs_days)).timestamp() * 1000)
            for run in every_result(client.search_runs, [experiment.experiment_id]):
                if run.data.tags.get(KEEP_TAG) == "true" or run.info.start_time >= since:
                    pin_run(run.info.run_id, f"kept run {run.info.run_id}")
    except Exception as exc:  # whatever the cause, an incomplete list must not reach vacuum
        raise PinListingError(
            f"cannot list every pinned Delta version from MLflow at {public_uri(tracking_uri)}, "
            "and a vacuum without one would delete data a model needs: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return pins


def table_key(uri: str) -> str:
    """One spelling per table, so that a run's recorded URI matches the listing of the Delta root."""
    return uri.rstrip("/") if "://" in uri else os.path.realpath(uri)


def pins_by_table(pins: list[Pin]) -> dict[str, list[Pin]]:
    by_table: dict[str, list[Pin]] = defaultdict(list)
    for pin in pins:
        by_table[table_key(pin.uri)].append(pin)
    return dict(by_table)


def delta_tables(root: str) -> list[str]:
    """URIs of the Delta tables directly under `root` (a local path or an object-store URI)."""
    fs, path = pafs.FileSystem.from_uri(root) if "://" in root else (pafs.LocalFileSystem(), root)
    entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    folders = [e for e in entries if e.type == pafs.FileType.Directory]
    logs = fs.get_file_info([f"{e.path}/_delta_log" for e in folders])
    return sorted(
        f"{root.rstrip('/')}/{e.base_name}"
        for e, log in zip(folders, logs)
        if log.type == pafs.FileType.Directory
    )


@dataclass(frozen=True)
class TableMaintenance:
    uri: str
    version_before: int
    version_after: int
    files_compacted: int  # small files rewritten into bigger ones
    files_vacuumed: int  # data files deleted
    kept_versions: tuple[int, ...]
    pinned_by: tuple[str, ...]  # "v<version>: <reason>" for every pin on the table

    @property
    def table(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


def maintain_table(
    uri: str,
    pins: list[Pin],
    retention_hours: int,
    *,
    min_retention_hours: int = MIN_RETENTION_HOURS,
) -> TableMaintenance:
    """Compact, then vacuum files older than `retention_hours` that no kept version references.

    A retention shorter than the longest write in flight could delete files an uncommitted writer
    just wrote, so one below `min_retention_hours` is refused before the table is touched; the
    scheduled default is a week.
    """
    if retention_hours < min_retention_hours:
        raise ValueError(
            f"retention_hours={retention_hours} is below the {min_retention_hours} h a write can be in flight: "
            "vacuum could delete its uncommitted files; lower min_retention_hours only where nothing else writes"
        )
    table = DeltaTable(uri)
    before = table.version()
    if table.metadata().configuration.get(LOG_CLEANUP) != "false":
        with_commit_retries(
            lambda: DeltaTable(uri).alter.set_table_properties({LOG_CLEANUP: "false"})
        )
    compacted = with_commit_retries(lambda: DeltaTable(uri).optimize.compact())["numFilesRemoved"]
    table = DeltaTable(uri)
    kept = tuple(sorted({p.version for p in pins if p.version <= table.version()}))
    # Delta's own check would refuse anything under the table's 7-day default; the floor above replaces it.
    # full=True also removes files no commit ever referenced (a writer killed mid-write).
    vacuumed = table.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=False,
        full=True,
        keep_versions=list(kept),
    )
    pinned_by = tuple(sorted({f"v{p.version}: {p.reason}" for p in pins}))
    return TableMaintenance(
        uri, before, DeltaTable(uri).version(), int(compacted), len(vacuumed), kept, pinned_by
    )


def maintain_lake(
    root: str,
    pins: list[Pin],
    retention_hours: int,
    *,
    min_retention_hours: int = MIN_RETENTION_HOURS,
) -> list[TableMaintenance]:
    by_table = pins_by_table(pins)
    return [
        maintain_table(
            uri,
            by_table.get(table_key(uri), []),
            retention_hours,
            min_retention_hours=min_retention_hours,
        )
        for uri in delta_tables(root)
    ]
