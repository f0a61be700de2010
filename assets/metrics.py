"""Metrics layer: the dbt project in dbt/, one Dagster asset per model, each landed as a Delta table.

The models' business definitions live once, in dbt/models/schema.yml; dagster-dbt shows them as the
asset descriptions and runs their dbt tests as asset checks. A run rebuilds exactly its partition
range (the start_date / end_date vars) from one pinned version of cleaned_events.
"""

import json
from collections.abc import Iterator, Mapping
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    MetadataValue,
    Output,
)
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation, RelationData, RelationKey
from dagster_dbt.core.dbt_event_iterator import DbtEventIterator
from dbt.adapters.base.column import Column

from assets.automation import rebuilt_dates_eager
from assets.partitions import daily_partitions, partition_dates
from assets.publish import delta_table_metadata
from lakehouse.config import lakehouse_paths, public_uri
from lakehouse.tables.schemas import CLEANED_EVENTS, TableSchema
from resources.dbt import DBT_DIR, dbt_manifest
from resources.delta import DeltaStorage

# The DuckDB types the delta_source plugin's pyarrow datasets come back as.
_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE",
    "double": "DOUBLE",
    "int": "INTEGER",
    "long": "BIGINT",
}


class LakehouseDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "metrics"

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> AssetSpec:
        """A model's table lives in Delta (dbt/plugins/delta_writer.py), not in dbt's DuckDB file, and the UI
        says so. The DbtProject object, which the UI can only show as "unserializable", is left out (the
        decorators get no `project`), and the link to each SQL file is added here instead."""
        spec = super().get_asset_spec(manifest, unique_id, None)
        node = manifest["nodes"].get(unique_id)  # sources are in manifest["sources"]
        if node is None:
            return spec
        source_file = LocalFileCodeReference(
            file_path=str(DBT_DIR / node["original_file_path"]), line_number=1
        )
        metadata = dict(spec.metadata) | {
            "dagster/code_references": CodeReferencesMetadataValue(code_references=[source_file])
        }
        if node["resource_type"] != "model":
            return spec.replace_attributes(metadata=metadata)  # seeds do live in DuckDB
        name = node["name"]
        delta = {
            "dagster/storage_kind": "delta",
            "dagster/table_name": name,
            "delta_uri": MetadataValue.path(public_uri(f"{lakehouse_paths().delta_root}/{name}")),
        }
        # Late events rebuild their cleaned_events dates (assets/automation.py): the metrics of those dates follow.
        return spec.replace_attributes(
            metadata=metadata | delta,
            kinds={"dbt", "delta"},
            automation_condition=rebuilt_dates_eager,
        )

    def get_asset_check_spec(
        self, asset_spec, manifest: Mapping[str, Any], unique_id: str, project
    ) -> AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec  # a test with `meta: description` in schema.yml says it in its own words
        return spec._replace(
            description=dbt_test_description(
                manifest["nodes"][unique_id], asset_spec.key.to_user_string()
            )
        )


def dbt_test_description(test: Mapping[str, Any], model: str) -> str:
    """What a generic dbt test checks, in words, from its name and arguments."""
    meta = test.get("test_metadata") or {}
    kwargs = meta.get("kwargs") or {}
    column = kwargs.get("column_name") or test.get("column_name") or "the row"
    if meta.get("name") == "not_null":
        return f"Fails if any row of {model} has a null {column}."
    if meta.get("name") == "unique":
        return f"Fails if two rows of {model} share the same {column}."
    if meta.get("name") == "accepted_values":
        return f"Fails if {model}.{column} holds a value other than {', '.join(map(str, kwargs.get('values', [])))}."
    arguments = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "model")
    return f"dbt test {meta.get('name', test.get('name'))} on {model} ({arguments})."


_TRANSLATOR = LakehouseDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
)


# The CLI's --partition-range needs every selected asset to run once per range, unpartitioned ones too.
@dbt_assets(
    manifest=dbt_manifest(),
    dagster_dbt_translator=_TRANSLATOR,
    select="resource_type:seed",
    backfill_policy=BackfillPolicy.single_run(),
)
def dbt_seeds(context: AssetExecutionContext, dbt: DbtCliResource):
    """The static reference tables (dbt/seeds/) loaded into dbt's database, and their tests run.

    Not partitioned: they have no dates.
    """
    yield from dbt.cli(["build"], context=context).stream()


@dbt_assets(
    manifest=dbt_manifest(),
    dagster_dbt_translator=_TRANSLATOR,
    exclude="resource_type:seed",
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
)
def dbt_metrics(context: AssetExecutionContext, dbt: DbtCliResource, delta: DeltaStorage):
    """Build the dbt models for the partition range and run their tests; report each model's Delta table."""
    days = partition_dates(context)
    store = delta.store()
    source_version = store.version("cleaned_events")
    dbt_vars = {
        "start_date": days[0].isoformat(),
        "end_date": days[-1].isoformat(),
        "cleaned_events_version": source_version,
    }
    invocation = dbt.cli(["build", "--vars", json.dumps(dbt_vars)], context=context)
    _declare_source_schema(invocation, CLEANED_EVENTS)
    for event in _with_column_metadata(invocation):
        if isinstance(event, Output):
            table = context.asset_key_for_output(event.output_name).path[-1]
            version = store.version(table)
            metadata = dict(event.metadata)
            if (
                "dagster/column_lineage" in metadata
            ):  # stored by dagster-dbt, shown by no view of open-source Dagster
                metadata["column_lineage"] = MetadataValue.md(
                    column_lineage_markdown(metadata["dagster/column_lineage"].value)
                )
            if "Execution Duration" in metadata:  # dagster-dbt's, a bare number of seconds
                metadata["dbt_execution_seconds"] = MetadataValue.float(
                    round(float(metadata.pop("Execution Duration").value), 3)
                )
            if version is not None:
                metadata |= _delta_metadata(store, table, version, source_version)
            event = event.with_metadata(metadata)
        yield event


def _with_column_metadata(invocation: DbtCliInvocation) -> Iterator:
    """dbt's events, once the dbt process has exited, with dagster-dbt's column schema and lineage.

    On DuckDB, dagster-dbt fetches column metadata only after dbt exits (one writer at a time), and
    it waits in a loop that polls without sleeping: a core taken from dbt for the whole build.
    Collected first, the events leave it nothing to wait for. A failed build's events still come
    out, then its error.
    """
    events: list = []
    error: Exception | None = None
    try:
        events.extend(invocation.stream())
    except Exception as failure:  # raised after the events before it, as dagster-dbt would
        error = failure

    def replay() -> Iterator:
        yield from events
        if error is not None:
            raise error

    return DbtEventIterator(replay(), invocation).fetch_column_metadata()


def column_lineage_markdown(lineage) -> str:
    """Each column of a model and the upstream columns it is derived from, as a table a person can read."""
    rows = []
    for column, deps in lineage.deps_by_column.items():
        inputs = ", ".join(f"{dep.asset_key.to_user_string()}.{dep.column_name}" for dep in deps)
        rows.append(f"| {column} | {inputs or '(computed, no input column)'} |")
    return "| column | derived from |\n|---|---|\n" + "\n".join(rows)


def _declare_source_schema(invocation: DbtCliInvocation, schema: TableSchema) -> None:
    """Give dagster-dbt's column lineage the columns of a Delta source.

    dagster-dbt asks the database for each parent's columns, but a Delta source is a DuckDB view over
    a dataset registered only in the dbt process, so the lookup finds none and column lineage to
    cleaned_events is lost. The schema is known (lakehouse.tables.schemas), so it is put in the invocation's
    relation cache (a private detail of dagster-dbt, pinned by uv.lock) before the lookup happens.
    """
    for source in invocation.manifest["sources"].values():
        if source["identifier"] == schema.name:
            key = RelationKey(
                database=source["database"],
                schema=source["schema"],
                identifier=source["identifier"],
            )
            columns = [Column(column=c.name, dtype=_DUCKDB_TYPES[c.dtype]) for c in schema.columns]
            invocation._relation_column_metadata_cache[key] = RelationData(
                name=source["relation_name"], columns=columns
            )  # noqa: SLF001


def _delta_metadata(store, table: str, version: int, source_version: int | None) -> dict:
    preview = store.read_arrow(table, version).slice(0, 10).to_pandas()
    return delta_table_metadata(store, table, version, preview) | {
        "cleaned_events_version": MetadataValue.int(source_version)
        if source_version is not None
        else MetadataValue.text("none"),
    }
