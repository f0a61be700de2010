"""Feast's point-in-time join, as one DuckDB query over Arrow data.

For each entity row and each feature view: the latest feature row of the same keys with event
timestamp <= the entity timestamp and >= entity timestamp - TTL (both inclusive; no lower bound
without a TTL). Of rows with the same keys and event timestamp, the latest created timestamp wins.
Entity rows without a match keep nulls, duplicate entity rows are all kept, and the result has the
entity columns in their order, then the features in request order, rows in entity order.

The join is DuckDB's ASOF LEFT JOIN, so each feature table is scanned once. With
`known_at_entity_time`, a feature row also needs a created timestamp <= the entity timestamp (a
value backfilled later was not known then); ASOF takes a single inequality, so that case is a
windowed LEFT JOIN instead.

This module knows nothing of Feast: `lakehouse.features.feast_delta` turns feature views into
`ViewRead`s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

ROW_ID = "__entity_row"


class PointInTimeError(ValueError):
    """Entity rows that cannot be joined: no timestamp column, or one that is not a timestamp."""


@dataclass(frozen=True)
class ViewRead:
    """One feature view's part of a point-in-time join, in the columns of its stored data."""

    name: str
    data: ds.Dataset
    timestamp: str  # the event timestamp column
    created: str | None  # the created timestamp column, if any
    join_keys: tuple[str, ...]
    entity_keys: tuple[str, ...]  # the entity columns they match, in the same order
    features: tuple[str, ...]
    outputs: tuple[str, ...]  # output column names, one per feature
    ttl: timedelta | None
    timestamp_output: str | None = None  # if set, also output the matched feature row's event time


@contextlib.contextmanager
def utc_duckdb() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection whose session time zone is UTC, closed after use."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


def quoted(identifier: str) -> str:
    """A quoted DuckDB identifier (column and view names come from definitions, never from values)."""
    return '"' + identifier.replace('"', '""') + '"'


def _utc_micros(table: pa.Table, column: str) -> pa.Table:
    index = table.schema.get_field_index(column)
    field = table.schema.field(index)
    if not pa.types.is_timestamp(field.type):
        raise PointInTimeError(f"entity column {column!r} is {field.type}, not a timestamp")
    # Naive entity timestamps are UTC, as in Feast's own stores.
    values = (
        table.column(index)
        .cast(pa.timestamp(field.type.unit, tz=field.type.tz or "UTC"))
        .cast(pa.timestamp("us", tz="UTC"))
    )
    return table.set_column(index, pa.field(column, values.type), values)


def point_in_time_join(
    entity: pa.Table,
    timestamp_column: str,
    reads: list[ViewRead],
    known_at_entity_time: bool = False,
) -> pa.Table:
    """`entity` with each view's features as of each row's timestamp (see the module docstring)."""
    if timestamp_column not in entity.column_names:
        raise PointInTimeError(
            f"entity rows have no {timestamp_column!r} column (columns: {', '.join(entity.column_names)})"
        )
    entity = _utc_micros(entity, timestamp_column)
    # DuckDB sees only the columns the joins need; the entity's other columns never leave Arrow.
    needed = list(
        dict.fromkeys([timestamp_column, *(k for read in reads for k in read.entity_keys)])
    )
    if missing := [k for k in needed if k not in entity.column_names]:
        raise PointInTimeError(
            f"entity rows have no {missing} column (columns: {', '.join(entity.column_names)})"
        )
    outputs = [out for read in reads for _, out in _matched(read, "v")]
    with utc_duckdb() as con:
        # Numbered before DuckDB sees them, so the result can be put back in entity order.
        con.register(
            "__entity_arrow",
            entity.select(needed).append_column(
                ROW_ID, pa.array(np.arange(entity.num_rows, dtype=np.int64))
            ),
        )
        steps = ["step_0 AS (SELECT * FROM __entity_arrow)"]
        # Feature rows newer than every entity row can never match: skip them in the scan.
        newest = pc.max(entity.column(timestamp_column)).as_py()
        params: dict[str, object] = {"newest": newest or datetime.max.replace(tzinfo=timezone.utc)}
        for i, read in enumerate(reads):
            con.register(f"__view_{i}", read.data)
            if read.ttl:
                params[f"ttl_{i}"] = read.ttl
            join = _known_rows_join if known_at_entity_time and read.created else _asof_join
            steps.extend(join(i, read, timestamp_column))
        select = ", ".join([ROW_ID, *(quoted(out) for out in outputs)])
        joined = con.sql(
            f"WITH {', '.join(steps)} SELECT {select} FROM step_{len(reads)}", params=params
        ).to_arrow_table()
    # Back to entity order: the row ids are a permutation of 0..n-1, so invert it instead of sorting.
    positions = np.empty(joined.num_rows, dtype=np.int64)
    positions[joined.column(ROW_ID).to_numpy()] = np.arange(joined.num_rows)
    features = joined.drop_columns([ROW_ID]).take(positions)
    for field, column in zip(features.schema, features.columns):
        entity = entity.append_column(field, column)
    return entity


def _view_rows(i: int, read: ViewRead, latest_created_only: bool) -> str:
    columns = [f"{quoted(k)} AS __k{j}" for j, k in enumerate(read.join_keys)] + [
        f"{quoted(c)} AS __f{j}" for j, c in enumerate(read.features)
    ]
    columns.append(f"{quoted(read.timestamp)} AS __ts")
    if read.created:
        columns.append(f"{quoted(read.created)} AS __created")
    qualify = ""
    if latest_created_only and read.created:
        # Of rows with the same keys and event time, the latest created one (ASOF takes one row per time).
        partition = ", ".join([quoted(k) for k in read.join_keys] + [quoted(read.timestamp)])
        qualify = (
            f" QUALIFY row_number() OVER (PARTITION BY {partition}"
            f" ORDER BY {quoted(read.created)} DESC NULLS LAST) = 1"
        )
    return (
        f"view_{i} AS (SELECT {', '.join(columns)} FROM __view_{i}"
        f" WHERE {quoted(read.timestamp)} <= $newest{qualify})"
    )


def _matched(read: ViewRead, alias: str) -> list[tuple[str, str]]:
    """(value, output name) of each column a match contributes."""
    matched = [(f"{alias}.__f{j}", out) for j, out in enumerate(read.outputs)]
    return matched + ([(f"{alias}.__ts", read.timestamp_output)] if read.timestamp_output else [])


def _asof_join(i: int, read: ViewRead, timestamp_column: str) -> list[str]:
    on = [f"s.{quoted(e)} = v.__k{j}" for j, e in enumerate(read.entity_keys)] + [
        f"s.{quoted(timestamp_column)} >= v.__ts"
    ]
    if read.ttl:
        # The ASOF match is the latest row at or before the entity time; a stale one counts as none.
        values = [
            f"CASE WHEN v.__ts >= s.{quoted(timestamp_column)} - $ttl_{i} THEN {value} END AS {quoted(out)}"
            for value, out in _matched(read, "v")
        ]
    else:
        values = [f"{value} AS {quoted(out)}" for value, out in _matched(read, "v")]
    return [
        _view_rows(i, read, latest_created_only=True),
        f"step_{i + 1} AS (SELECT s.*, {', '.join(values)} FROM step_{i} s"
        f" ASOF LEFT JOIN view_{i} v ON {' AND '.join(on)})",
    ]


def _known_rows_join(i: int, read: ViewRead, timestamp_column: str) -> list[str]:
    ts = f"s.{quoted(timestamp_column)}"
    on = [f"s.{quoted(e)} = v.__k{j}" for j, e in enumerate(read.entity_keys)] + [
        f"v.__ts <= {ts}",
        f"v.__created <= {ts}",
    ]
    if read.ttl:
        on.append(f"v.__ts >= {ts} - $ttl_{i}")
    values = [f"{value} AS {quoted(out)}" for value, out in _matched(read, "m")]
    return [
        _view_rows(i, read, latest_created_only=False),
        f"match_{i} AS (SELECT s.{ROW_ID}, v.* FROM step_{i} s JOIN view_{i} v ON {' AND '.join(on)}"
        f" QUALIFY row_number() OVER (PARTITION BY s.{ROW_ID} ORDER BY v.__ts DESC, v.__created DESC) = 1)",
        f"step_{i + 1} AS (SELECT s.*, {', '.join(values)} FROM step_{i} s"
        f" LEFT JOIN match_{i} m ON s.{ROW_ID} = m.{ROW_ID})",
    ]


def entity_rows_between(
    reads: list[ViewRead], timestamp_column: str, start: datetime, end: datetime
) -> pa.Table:
    """Entity rows for a retrieval without any: each distinct (keys, event time) of the views' rows
    with start <= event time <= end, oldest first. Every view must have the same entity keys."""
    keys = {frozenset(read.entity_keys) for read in reads}
    if len(keys) > 1:
        raise PointInTimeError(
            "a retrieval without entity rows needs views with the same entity keys, "
            f"got {sorted(sorted(k) for k in keys)}"
        )
    entity_keys = list(reads[0].entity_keys) if reads else []
    with utc_duckdb() as con:
        selects = []
        for i, read in enumerate(reads):
            con.register(f"__view_{i}", read.data)
            by_entity = dict(zip(read.entity_keys, read.join_keys))
            columns = [f"{quoted(by_entity[k])} AS {quoted(k)}" for k in entity_keys] + [
                f"{quoted(read.timestamp)} AS {quoted(timestamp_column)}"
            ]
            selects.append(
                f"SELECT {', '.join(columns)} FROM __view_{i} WHERE {quoted(read.timestamp)} BETWEEN $start AND $end"
            )
        if not selects:
            return pa.table({timestamp_column: pa.array([], pa.timestamp("us", tz="UTC"))})
        order = ", ".join([quoted(timestamp_column)] + [quoted(k) for k in entity_keys])
        return con.sql(
            f"SELECT DISTINCT * FROM ({' UNION '.join(selects)}) ORDER BY {order}",
            params={"start": start, "end": end},
        ).to_arrow_table()
