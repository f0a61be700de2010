"""Table maintenance on a schedule: compaction and vacuum that keep every version a model needs."""

from datetime import datetime, timezone

from dagster import (
    Config,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
)

from lakehouse.ml.retention import MIN_RETENTION_HOURS, maintain_lake, pinned_versions
from resources.delta import DeltaStorage
from resources.mlflow import MlflowTracking


class MaintenanceConfig(Config):
    retention_hours: int = (
        168  # files younger than this stay: a writer in flight may not have committed them yet
    )
    keep_runs_days: int = 30  # unregistered training runs this recent stay rebuildable
    # a shorter retention_hours is refused; lower only where nothing else writes
    min_retention_hours: int = MIN_RETENTION_HOURS


@asset(group_name="maintenance", kinds={"delta"})
def table_maintenance(
    config: MaintenanceConfig, delta: DeltaStorage, mlflow_tracking: MlflowTracking
):
    """Every Delta table of the lake compacted and vacuumed, with the versions models need kept readable.

    Small files are rewritten into bigger ones; data files that neither the current version nor a
    pinned version references are deleted once older than `retention_hours`. Pinned: every version
    read by the run of a registered model version, or by a training run that is tagged
    `lakehouse.keep=true` or younger than `keep_runs_days`. Other old versions stop being readable;
    a training run that read one can still be reproduced from its snapshot, but not rebuilt.

    Limits: fails without touching a table when MLflow cannot list every pin (PinListingError), or
    when `retention_hours` is below `min_retention_hours`.
    """
    # Pins first: if they cannot all be listed, the failure comes before any table is compacted or vacuumed.
    pins = pinned_versions(
        mlflow_tracking.tracking_uri, config.keep_runs_days, datetime.now(timezone.utc)
    )
    results = maintain_lake(
        delta.root, pins, config.retention_hours, min_retention_hours=config.min_retention_hours
    )
    rows = "\n".join(
        f"| {r.table} | {r.version_before} | {r.version_after} | {r.files_compacted} "
        f"| {r.files_vacuumed} | {', '.join(map(str, r.kept_versions)) or '-'} |"
        for r in results
    )
    return MaterializeResult(
        metadata={
            "tables": MetadataValue.int(len(results)),
            "files_compacted": MetadataValue.int(sum(r.files_compacted for r in results)),
            "files_vacuumed": MetadataValue.int(sum(r.files_vacuumed for r in results)),
            "maintenance": MetadataValue.md(
                "| table | version before | after | files compacted | files vacuumed "
                "| pinned versions kept |\n|---|---|---|---|---|---|\n" + rows
            ),
            "pinned_by": MetadataValue.json({r.table: list(r.pinned_by) for r in results}),
        }
    )


table_maintenance_job = define_asset_job("table_maintenance_job", selection=[table_maintenance])
# Nightly, after the daily partitions have landed.
table_maintenance_schedule = ScheduleDefinition(
    name="table_maintenance_schedule",
    job=table_maintenance_job,
    description="Nightly at 03:00 UTC: compact and vacuum every Delta table, keeping the versions models need.",
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
