"""What an engine hands to write-audit-publish: a batch that is validated, committed, previewed, released.

`Batch` is that interface; both engines' `batch(df)` return one (ArrowBatch below for DuckDB,
SparkBatch in engines/spark.py), and so does the raw layer, which reads landed files into Arrow
without an engine. ArrowBatch lives here, not with DuckDB, because nothing in it is DuckDB's: the
table is committed by deltalake and validated with pandera on polars.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from lakehouse.tables.schemas import TableSchema
from lakehouse.tables.storage import DateRange, DeltaStore
from lakehouse.tables.validation import ValidationReport, validate_arrow


class Batch(Protocol):
    @property
    def rows(self) -> int: ...

    def validate(self, schema: TableSchema) -> ValidationReport: ...

    def commit(
        self,
        store: DeltaStore,
        schema: TableSchema,
        replace: DateRange | None = None,
        inputs: dict[str, int] | None = None,
        append: bool = False,
        properties: dict[str, str] | None = None,
    ) -> int: ...

    def preview(self, rows: int = 10) -> pa.Table: ...

    def release(self) -> None: ...


class ArrowBatch:
    """An Arrow table about to be committed by deltalake; validated with pandera on polars."""

    def __init__(self, table: pa.Table):
        self.table = table

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def validate(self, schema: TableSchema) -> ValidationReport:
        return validate_arrow(schema, self.table)

    def commit(
        self,
        store: DeltaStore,
        schema: TableSchema,
        replace: DateRange | None = None,
        inputs: dict[str, int] | None = None,
        append: bool = False,
        properties: dict[str, str] | None = None,
    ) -> int:
        return store.write_arrow(schema, self.table, replace, inputs, append, properties)

    def preview(self, rows: int = 10) -> pa.Table:
        return self.table.slice(0, rows)

    def release(self) -> None:
        self.table = None
