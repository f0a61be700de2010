"""dbt-duckdb plugin: read a Delta source through its log with deltalake, optionally pinned to a version.

dbt-duckdb's own `delta` plugin tests `if as_of_version:`, so version 0 silently reads the latest
version instead. Here a pin is any integer >= 0; an unset one (null, or "None" as YAML rendering
leaves it) reads the latest version. The table comes back as a pyarrow dataset, so DuckDB pushes
partition filters down and reads only the files it needs.
"""

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError


def pinned_version(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "None", "null")):
        return None
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"as_of_version must be a Delta version (an integer >= 0), got {value!r}"
        ) from None
    if version < 0:
        raise ValueError(f"as_of_version must be >= 0, got {version}")
    return version


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        pass

    def load(self, source_config: SourceConfig):
        path = source_config.get("delta_table_path")
        if not path:
            raise ValueError(
                f"source {source_config.name}.{source_config.identifier}: meta.delta_table_path is required"
            )
        version = pinned_version(source_config.get("as_of_version"))
        try:
            table = DeltaTable(
                path, version=version, storage_options=source_config.get("storage_options") or None
            )
        except TableNotFoundError:
            raise ValueError(
                f"source {source_config.identifier}: no Delta table at {path} (materialize it first)"
            ) from None
        return table.to_pyarrow_dataset()

    def default_materialization(self) -> str:
        return "view"
