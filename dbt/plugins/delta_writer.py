"""dbt-duckdb plugin: commit each `external` model to a Delta table with deltalake.

The `external` materialization first writes the model to a parquet file (target_config.location);
store() then replaces the Delta table <data dir>/delta/<model name> with its rows, timestamps as UTC
microseconds, so the table stays at Delta protocol 1/2 and readable by Spark and deltalake alike.
"""

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from deltalake import write_deltalake


def _utc_micros(table: pa.Table) -> pa.Table:
    fields = [f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def delta_table_path(model_name: str) -> str:
    data_dir = os.environ.get("LAKEHOUSE_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "data")
    return str(Path(data_dir) / "delta" / model_name)


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # DuckDB's COPY ... TO does not create the staging folder.
        if self.creds is not None and self.creds.external_root:
            os.makedirs(self.creds.external_root, exist_ok=True)

    def store(self, target_config: TargetConfig) -> None:
        location = target_config.location
        if location is None or location.format != "parquet":
            raise ValueError(f"delta_writer needs a parquet staging location, got {location}")
        table = _utc_micros(pq.read_table(location.path))
        write_deltalake(delta_table_path(target_config.relation.identifier), table, mode="overwrite", schema_mode="overwrite")
