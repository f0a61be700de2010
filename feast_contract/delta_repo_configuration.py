"""Feast's universal offline-store suite, pointed at the Delta offline store.

Feast's repository holds the suite (sdk/python/tests); this module plugs our store into it through
`FULL_REPO_CONFIGS_MODULE`, as Feast's docs on third-party offline stores describe. `make
feast-contract FEAST_SRC=<feast checkout>` runs it. Nothing here is imported by the project itself.
"""

from __future__ import annotations

import shutil
import tempfile

import pandas as pd
from deltalake import write_deltalake
from tests.universal.feature_repos.universal.data_source_creator import DataSourceCreator

from lakehouse.features.feast_delta import (
    DeltaLoggingDestination,
    DeltaOfflineStoreConfig,
    DeltaSource,
    SavedDatasetDeltaStorage,
)


class DeltaDataSourceCreator(DataSourceCreator):
    """Each test frame becomes its own Delta table in a temporary directory."""

    def __init__(self, project_name: str, *args, **kwargs):
        super().__init__(project_name)
        self.root = tempfile.mkdtemp(prefix=f"{project_name}_delta_")
        self.count = 0

    def _directory(self, name: str) -> str:
        self.count += 1
        return f"{self.root}/{self.count:03d}_{name}"

    def create_data_source(
        self,
        df: pd.DataFrame,
        destination_name: str,
        created_timestamp_column="created_ts",
        field_mapping=None,
        timestamp_field="ts",
    ) -> DeltaSource:
        path = self._directory(destination_name)
        write_deltalake(path, df)
        return DeltaSource(
            name=f"{self.project_name}_{destination_name}",
            path=path,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            field_mapping=field_mapping or {"ts_1": "ts"},
        )

    def create_offline_store_config(self) -> DeltaOfflineStoreConfig:
        return DeltaOfflineStoreConfig()

    def create_saved_dataset_destination(self) -> SavedDatasetDeltaStorage:
        return SavedDatasetDeltaStorage(path=self._directory("saved_dataset"))

    def create_logged_features_destination(self) -> DeltaLoggingDestination:
        return DeltaLoggingDestination(path=self._directory("feature_log"))

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)


AVAILABLE_OFFLINE_STORES = [("local", DeltaDataSourceCreator)]
AVAILABLE_ONLINE_STORES = {"sqlite": ({"type": "sqlite"}, None)}
