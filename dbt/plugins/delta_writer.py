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

import os
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from deltalake import CommitProperties, DeltaTable, write_deltalake

from lakehouse.config import lakehouse_paths
from lakehouse.tables.storage import (
    ALL,
    TABLE_PROPERTIES,
    DateRange,
    commit_metadata,
    commit_with_checks,
)


def _utc_micros(table: pa.Table) -> pa.Table:
    fields = [
        f.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _without_empty_marker(table: pa.Table) -> pa.Table:
    """The rows of the model: for an empty result, dbt-duckdb stages one all-null row to keep the schema."""
    if table.num_rows == 1 and all(column.null_count == 1 for column in table.columns):
        return table.slice(0, 0)
    return table


def delta_table_path(model_name: str) -> str:
    # The lake's one Delta root (LAKEHOUSE_DELTA_ROOT, else <data dir>/delta), as the Python assets read it.
    return f"{lakehouse_paths().delta_root.rstrip('/')}/{model_name}"


def _unset(value: Any) -> bool:
    """An unset var, as YAML rendering leaves it."""
    return value is None or str(value).strip() in ("", "None", "null")


def _date_or_none(value: Any) -> date | None:
    return None if _unset(value) else date.fromisoformat(str(value))


def replace_range(column: str | None, grain: str, start: Any, end: Any) -> DateRange | None:
    """The partitions a run over [start, end] rebuilds, whole weeks for a weekly model; None for the whole table."""
    first, last = _date_or_none(start), _date_or_none(end)
    if first is None and last is None:
        return None
    if first is None or last is None or first > last:
        raise ValueError(f"replace range must be two ordered dates, got {start!r}..{end!r}")
    if not column or not column.isidentifier():
        raise ValueError(f"partition_column must be a column name, got {column!r}")
    if grain == "week":
        first, last = first - timedelta(days=first.weekday()), last - timedelta(days=last.weekday())
    elif grain != "day":
        raise ValueError(f"partition_grain must be day or week, got {grain!r}")
    return DateRange(column, first, last)


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # DuckDB's COPY ... TO does not create the staging folder.
        if self.creds is not None and self.creds.external_root:
            os.makedirs(self.creds.external_root, exist_ok=True)

    def store(self, target_config: TargetConfig) -> None:
        """Commit the staged model with the lake's rules (lakehouse/tables/storage.py): the first write creates
        the table or fails, and a commit computed from an older cleaned_events version than the rows it
        would replace is refused (StaleInputError)."""
        location, config = target_config.location, target_config.config
        if location is None or location.format != "parquet":
            raise ValueError(f"delta_writer needs a parquet staging location, got {location}")
        path = delta_table_path(target_config.relation.identifier)
        column = config.get("partition_column")
        replace = replace_range(
            column,
            config.get("partition_grain", "day"),
            config.get("replace_start"),
            config.get("replace_end"),
        )
        rows = _utc_micros(_without_empty_marker(pq.read_table(location.path)))
        inputs = _inputs(config)
        scope = replace or ALL
        info = commit_metadata(inputs, None, scope)

        def attempt(base: DeltaTable | None) -> None:
            write_deltalake(
                path if base is None else base,
                rows,
                mode="error" if base is None else "overwrite",
                predicate=replace.predicate() if (replace and base is not None) else None,
                partition_by=[column] if column else None,
                configuration=TABLE_PROPERTIES if base is None else None,
                # A whole-table rebuild may change the model's columns; a range must fit the table's.
                schema_mode="overwrite" if (base is not None and replace is None) else None,
                commit_properties=CommitProperties(custom_metadata=info, max_commit_retries=0),
            )

        commit_with_checks(path, None, attempt, scope, inputs)


def _inputs(config: Any) -> dict[str, int]:
    """The source versions the model read, as lakehouse.tables.storage records inputs (same key, same JSON)."""
    version = config.get("cleaned_events_version")
    return {} if _unset(version) else {"cleaned_events": int(version)}
