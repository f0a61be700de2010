"""Write-audit-publish for Delta-backed assets, and the metadata every materialization reports.

A batch is validated against its table's pandera schema first; the result is reported as the
table's blocking schema check, and only a passing batch is committed. A failing batch raises, so
nothing is written and no downstream asset runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
)

from lakehouse.config import public_uri
from lakehouse.engines.batch import Batch
from lakehouse.tables.schemas import TableSchema as LakehouseTableSchema
from lakehouse.tables.storage import DateRange, DeltaStore, StaleInputError, TableMovedError
from lakehouse.tables.validation import ValidationReport

if TYPE_CHECKING:
    import pandas as pd


# Metadata is stored with every event in Dagster's instance: one 5 MB raw line copied into each
# preview made each materialization event ~60 MB. Cells and whole values are cut to these sizes.
CELL_CHARS = 200
VALUE_CHARS = 20_000
PREVIEW_ROWS = 10


def clipped(text: str, limit: int = CELL_CHARS) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text):,} chars]"


def bounded(value: Any) -> Any:
    """A JSON-like value with every string clipped, for metadata."""
    if isinstance(value, str):
        return clipped(value)
    if isinstance(value, dict):
        return {clipped(str(k)): bounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [bounded(v) for v in value]
    return value


def preview_markdown(frame: pd.DataFrame) -> str:
    """The first rows as a markdown table, long cells clipped."""
    shown = frame.head(PREVIEW_ROWS).map(lambda v: clipped(v) if isinstance(v, str) else v)
    return clipped(shown.to_markdown(index=False), VALUE_CHARS)


def schema_check(schema: LakehouseTableSchema) -> AssetCheckSpec:
    return AssetCheckSpec(
        f"{schema.name}_schema",
        asset=schema.name,
        blocking=True,
        description=(
            f"Each batch passes the {schema.name} pandera schema (types, nullability, allowed values, "
            f"unique {', '.join(schema.unique)}) before it is committed."
        ),
    )


def column_schema(schema: LakehouseTableSchema) -> TableSchema:
    return TableSchema(
        columns=[TableColumn(c.name, c.dtype, description=c.description) for c in schema.columns]
    )


def delta_table_metadata(
    store: DeltaStore, table: str, version: int, preview: pd.DataFrame, total_rows: bool = True
) -> dict:
    """What every Delta-backed materialization reports about the table it committed.

    `total_rows` False: the table's row count is left out (a partitioned write reports each partition's).
    """
    rows = (
        {"dagster/row_count": MetadataValue.int(store.row_count(table, version))}
        if total_rows
        else {}
    )
    return {
        "delta_uri": MetadataValue.path(public_uri(store.uri(table))),
        "delta_version": MetadataValue.int(version),
        **rows,
        "preview": MetadataValue.md(preview_markdown(preview)),
    }


def delta_metadata(
    store: DeltaStore,
    schema: LakehouseTableSchema,
    version: int,
    rows_written: int | None,
    preview: pd.DataFrame,
    inputs: dict[str, int] | None = None,
) -> dict:
    """`rows_written` None: a partitioned write, whose row figures go on each partition (`partition_figures`)."""
    common = delta_table_metadata(
        store, schema.name, version, preview, total_rows=rows_written is not None
    ) | {
        "dagster/column_schema": column_schema(schema),
        "input_versions": MetadataValue.json(inputs or {}),
    }
    return (
        common
        if rows_written is None
        else common | {"rows_written": MetadataValue.int(rows_written)}
    )


def partition_figures(
    context, asset_key: str, figures: dict[date, dict[str, int]], run_totals: dict[str, Any]
) -> None:
    """Each partition's own figures on its materialization, and the run's totals once, on its last partition.

    Dagster copies a result's metadata to every partition a run materializes, so figures that differ
    per partition go through `add_asset_metadata` instead.
    """
    for day, numbers in sorted(figures.items()):
        context.add_asset_metadata(
            {name: MetadataValue.int(n) for name, n in numbers.items()},
            asset_key=asset_key,
            partition_key=day.isoformat(),
        )
    context.add_asset_metadata(
        run_totals, asset_key=asset_key, partition_key=max(figures).isoformat()
    )


def schema_check_result(schema: LakehouseTableSchema, report: ValidationReport) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=schema.name,
        check_name=f"{schema.name}_schema",
        passed=report.passed,
        metadata={
            "rows": report.rows,
            "failures": MetadataValue.json(bounded(report.failures[:20])),
        },
    )


# A commit refused because an input moved on is computed again from the newest versions, this many times.
RECOMPUTE_ATTEMPTS = 3


def publish(
    context,
    store: DeltaStore,
    compute: Callable[[], tuple[dict[LakehouseTableSchema, Batch], dict[str, int]]],
    replace: DateRange | None = None,
    partitioned: bool = False,
) -> Iterator:
    """Write-audit-publish of batches computed from the newest versions of their inputs.

    `compute()` reads its inputs at their current versions and returns a batch per table (see
    lakehouse.engines) and those versions. Every batch is validated and its schema check reported;
    only if all pass are they committed, each recording the input versions. A commit refused because
    an input moved on meanwhile (StaleInputError: a newer computation is already in the table;
    TableMovedError: the table it was computed from changed) is computed again from the newest
    versions. `partitioned`: the caller reports row figures per partition (`partition_figures`).
    """
    for attempt in range(1, RECOMPUTE_ATTEMPTS + 1):
        batches, inputs = compute()
        try:
            reports = {schema: batch.validate(schema) for schema, batch in batches.items()}
            if not all(report.passed for report in reports.values()):
                yield from (
                    schema_check_result(schema, report) for schema, report in reports.items()
                )
                for report in reports.values():
                    report.raise_if_failed()
            try:
                versions = {
                    schema: batch.commit(store, schema, replace, inputs)
                    for schema, batch in batches.items()
                }
            except (StaleInputError, TableMovedError) as exc:
                context.log.warning(
                    f"attempt {attempt} not committed: {exc}. Computing again from the newest versions."
                )
                continue
            for schema, batch in batches.items():
                yield schema_check_result(schema, reports[schema])
                preview = batch.preview(PREVIEW_ROWS).to_pandas()
                yield MaterializeResult(
                    asset_key=schema.name,
                    metadata=delta_metadata(
                        store,
                        schema,
                        versions[schema],
                        None if partitioned else reports[schema].rows,
                        preview,
                        inputs,
                    ),
                )
            return
        finally:
            for batch in batches.values():
                batch.release()
    raise StaleInputError(
        f"{', '.join(schema.name for schema in batches)}: the inputs kept moving ahead of "
        f"{RECOMPUTE_ATTEMPTS} computations; run it again"
    )
