"""dbt-duckdb plugin: commit each `external` model to a Delta table with deltalake.

The `external` materialization first writes the model to a parquet file (target_config.location);
store() then commits its rows to the Delta table <data dir>/delta/<model name>, timestamps as UTC
microseconds, so the table stays readable by Spark and deltalake alike.

Incremental by partition: a model declares its date `partition_column` and `partition_grain` (day or
week), and the run its range (`replace_start` / `replace_end`, from the start_date / end_date vars).
With a range, exactly the partitions of that range are replaced (a predicate built from parsed
dates); rows outside it fail the write instead of leaking into other partitions. Without one, the
whole table is replaced.
"""

import json
import os
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError


def _utc_micros(table: pa.Table) -> pa.Table:
    fields = [f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def _without_empty_marker(table: pa.Table) -> pa.Table:
    """The rows of the model: for an empty result, dbt-duckdb stages one all-null row to keep the schema."""
    if table.num_rows == 1 and all(column.null_count == 1 for column in table.columns):
        return table.slice(0, 0)
    return table


def delta_table_path(model_name: str) -> str:
    # The lake's one Delta root (LAKEHOUSE_DELTA_ROOT, else <data dir>/delta), as the Python assets read it.
    from lakehouse.config import lakehouse_paths

    return f"{lakehouse_paths().delta_root.rstrip('/')}/{model_name}"


def _unset(value: Any) -> bool:
    """An unset var, as YAML rendering leaves it."""
    return value is None or str(value).strip() in ("", "None", "null")


def _date_or_none(value: Any) -> date | None:
    return None if _unset(value) else date.fromisoformat(str(value))


def replace_predicate(column: str, grain: str, start: Any, end: Any) -> str | None:
    """The Delta predicate for the partitions a run over [start, end] rebuilds; None for the whole table."""
    first, last = _date_or_none(start), _date_or_none(end)
    if first is None and last is None:
        return None
    if first is None or last is None or first > last:
        raise ValueError(f"replace range must be two ordered dates, got {start!r}..{end!r}")
    if not column.isidentifier():
        raise ValueError(f"partition_column must be a column name, got {column!r}")
    if grain == "week":
        first, last = first - timedelta(days=first.weekday()), last - timedelta(days=last.weekday())
    elif grain != "day":
        raise ValueError(f"partition_grain must be day or week, got {grain!r}")
    return f"{column} >= '{first.isoformat()}' AND {column} <= '{last.isoformat()}'"


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # DuckDB's COPY ... TO does not create the staging folder.
        if self.creds is not None and self.creds.external_root:
            os.makedirs(self.creds.external_root, exist_ok=True)

    def store(self, target_config: TargetConfig) -> None:
        location, config = target_config.location, target_config.config
        if location is None or location.format != "parquet":
            raise ValueError(f"delta_writer needs a parquet staging location, got {location}")
        path = delta_table_path(target_config.relation.identifier)
        column = config.get("partition_column")
        predicate = replace_predicate(column, config.get("partition_grain", "day"), config.get("replace_start"), config.get("replace_end"))
        try:
            DeltaTable(path)
            exists = True
        except TableNotFoundError:
            exists = False
        write_deltalake(
            path,
            _utc_micros(_without_empty_marker(pq.read_table(location.path))),
            mode="overwrite",
            predicate=predicate if exists else None,
            partition_by=[column] if column else None,
            schema_mode=None if (exists and predicate) else "overwrite",
            commit_properties=CommitProperties(custom_metadata={"lakehouse.inputs": json.dumps(_inputs(config))}),
        )


def _inputs(config: Any) -> dict[str, int]:
    """The source versions the model read, as lakehouse.tables.storage records inputs (same key, same JSON)."""
    version = config.get("cleaned_events_version")
    return {} if _unset(version) else {"cleaned_events": int(version)}
