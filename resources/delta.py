"""Delta Lake storage as a Dagster resource: where the tables live."""

from __future__ import annotations

from dagster import ConfigurableResource

from lakehouse.tables.storage import DeltaStore


class DeltaStorage(ConfigurableResource):
    """Root URI of the Delta tables: a local directory, or `s3://bucket/prefix` in the cluster profile.

    Object-store credentials are not configuration: delta-rs and Spark read them from the
    environment (AWS_ACCESS_KEY_ID, ...) when they connect, so they never reach run config or metadata.
    """

    root: str

    def store(self) -> DeltaStore:
        return DeltaStore(self.root)
