"""DuckDB through SQLFrame: the in-process engine of the local profile.

SQLFrame turns the PySpark DataFrame API into SQL that DuckDB runs, so the transformations written
for Spark run here unchanged, without a JVM. Delta tables are read through their log by deltalake
(as Arrow datasets DuckDB scans lazily, with filter pushdown) and batches are committed by
deltalake from Arrow. Validation runs pandera's polars backend on that Arrow batch, zero-copy.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import threading
from collections.abc import Iterator

import pyarrow as pa

from lakehouse.engines.batch import ArrowBatch
from lakehouse.tables.schemas import TableSchema
from lakehouse.tables.storage import DeltaStore

_lock = threading.Lock()
_names = itertools.count()


def get_duckdb_session():
    """The process's SQLFrame DuckDB session (SQLFrame keeps one session per process)."""
    import duckdb
    from sqlframe.base.session import _BaseSession
    from sqlframe.duckdb import DuckDBSession

    with _lock:
        existing = _BaseSession._instance  # noqa: SLF001 (SQLFrame's own singleton)
        if isinstance(existing, DuckDBSession):
            return existing
        conn = duckdb.connect()
        # Closed before the interpreter tears down DuckDB's bindings (which then reports leaks).
        atexit.register(conn.close)
        # Spark's session time zone is UTC in every profile: dates of timestamps must agree.
        conn.execute("SET TimeZone = 'UTC'")
        # Memory DuckDB frees goes back to the system in the background, instead of staying with the
        # process for the steps after cleaning (the demo's peak is cleaning, then dbt beside it).
        conn.execute("SET allocator_background_threads = true")
        return DuckDBSession(conn=conn)


def _fresh_name(kind: str) -> str:
    return f"lakehouse_{kind}_{next(_names)}"


def _table(session, name: str):
    # SQLFrame looks a table's columns up in DuckDB's catalog, which does not list registered
    # Arrow objects; tell it the columns, as Spark types, from DuckDB's own description.
    from sqlglot import exp

    described = session._conn.execute(f'DESCRIBE "{name}"').fetchall()  # noqa: SLF001
    columns = {
        column: exp.DataType.build(kind, dialect="duckdb").sql(dialect="spark")
        for column, kind, *_ in described
    }
    session.catalog.add_table(name, columns)
    return session.table(name)


def view_of_sql(df):
    """A new DataFrame over a DuckDB view of `df`'s SQL (see compat.settled)."""
    name = _fresh_name("view")
    df.session._conn.execute(
        f'CREATE TEMP VIEW "{name}" AS {df.sql(dialect="duckdb", optimize=False, pretty=False)}'
    )  # noqa: SLF001
    return _table(df.session, name)


class DuckDBEngine:
    name = "duckdb"

    @property
    def session(self):
        return get_duckdb_session()

    @property
    def _conn(self):
        return self.session._conn  # noqa: SLF001

    def _view_of(self, data, kind: str):
        name = _fresh_name(kind)
        self._conn.register(name, data)
        return _table(self.session, name)

    def read(self, store: DeltaStore, table: str, version: int | None = None):
        """The table as of `version`, scanned lazily from exactly that version's files."""
        return self._view_of(store.table(table, version).to_pyarrow_dataset(), "delta")

    def from_arrow(self, table: pa.Table, schema: TableSchema | None = None):
        return self._view_of(table.cast(schema.arrow()) if schema is not None else table, "arrow")

    @contextlib.contextmanager
    def persisting(self) -> Iterator:
        """A `persist(df)` that computes df once into a DuckDB temporary table; they are dropped on exit."""
        names = []

        def persist(df):
            names.append(_fresh_name("persisted"))
            self._conn.execute(
                f'CREATE TEMP TABLE "{names[-1]}" AS {df.sql(dialect="duckdb", optimize=False, pretty=False)}'
            )
            return _table(self.session, names[-1])

        try:
            yield persist
        finally:
            for name in names:
                self._conn.execute(f'DROP TABLE IF EXISTS "{name}"')

    def batch(self, df) -> ArrowBatch:
        return ArrowBatch(self.to_arrow(df))

    def to_arrow(self, df) -> pa.Table:
        return df.toArrow()
