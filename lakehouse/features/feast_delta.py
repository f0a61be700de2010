"""A Feast offline store for Delta Lake tables: read through the Delta log with deltalake, joined in DuckDB.

Plugged in through Feast's own extension point, so the ordinary CLI and SDK work on it:

    offline_store:
      type: lakehouse.features.feast_delta.DeltaOfflineStore

and feature views use `DeltaSource(path=..., timestamp_field=...)` as their batch source.

Point-in-time semantics are Feast's: for each entity row, the latest feature row of the same keys
with event timestamp <= the entity timestamp and >= entity timestamp - TTL (both inclusive; no
lower bound without a TTL); of rows with the same event timestamp, the latest created timestamp
wins; entity rows without a match keep nulls; duplicate entity rows are all kept; the result has
the entity columns in their order, then the features in request order, rows in entity order.
The join is DuckDB's ASOF LEFT JOIN, so each feature table is scanned once.

A source can be pinned to a Delta version (`DeltaSource(version=N)`, or `pinned(view, N)` for one
retrieval): that is how a past training set is rebuilt after the table was overwritten, deleted
from or compacted (as long as that version has not been vacuumed away).

Credentials for object storage come from the environment (deltalake reads AWS_* etc. itself);
nothing secret is stored in the registry.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from feast.data_source import DataSource
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL, infer_event_timestamp_from_entity_df
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.type_map import pa_to_feast_value_type
from feast.value_type import ValueType
from pydantic import StrictStr

SOURCE_CLASS = "lakehouse.features.feast_delta.DeltaSource"
FEATURE_TIMESTAMP_SUFFIX = "__feature_timestamp"


class DeltaSourceError(ValueError):
    """A Delta source that cannot serve a retrieval: missing table, missing column, wrong type."""


class DeltaSource(DataSource):
    """A Delta table as a Feast batch source, optionally pinned to one version."""

    def __init__(
        self,
        *,
        path: str,
        timestamp_field: str,
        name: str | None = None,
        created_timestamp_column: str = "",
        field_mapping: dict[str, str] | None = None,
        version: int | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str = "",
    ):
        if version is not None and (not isinstance(version, int) or version < 0):
            raise DeltaSourceError(f"a Delta version is an integer >= 0, got {version!r}")
        self.path = path
        self.version = version
        super().__init__(
            name=name or path,
            timestamp_field=timestamp_field,
            created_timestamp_column=created_timestamp_column,
            field_mapping=field_mapping,
            description=description,
            tags=tags,
            owner=owner,
        )

    def __hash__(self):
        return super().__hash__()

    def __eq__(self, other):
        return isinstance(other, DeltaSource) and super().__eq__(other) and (self.path, self.version) == (other.path, other.version)

    def source_type(self) -> DataSourceProto.SourceType.ValueType:
        return DataSourceProto.CUSTOM_SOURCE

    def _to_proto_impl(self) -> DataSourceProto:
        proto = DataSourceProto(
            name=self.name,
            type=DataSourceProto.CUSTOM_SOURCE,
            data_source_class_type=SOURCE_CLASS,
            field_mapping=self.field_mapping,
            custom_options=DataSourceProto.CustomSourceOptions(configuration=json.dumps({"path": self.path, "version": self.version}).encode()),
            description=self.description,
            tags=self.tags,
            owner=self.owner,
        )
        proto.timestamp_field = self.timestamp_field
        proto.created_timestamp_column = self.created_timestamp_column
        return proto

    @staticmethod
    def from_proto(data_source: DataSourceProto) -> DeltaSource:
        options = json.loads(data_source.custom_options.configuration)
        return DeltaSource(
            name=data_source.name,
            path=options["path"],
            version=options.get("version"),
            timestamp_field=data_source.timestamp_field,
            created_timestamp_column=data_source.created_timestamp_column,
            field_mapping=dict(data_source.field_mapping),
            description=data_source.description,
            tags=dict(data_source.tags),
            owner=data_source.owner,
        )

    def table(self) -> DeltaTable:
        try:
            return DeltaTable(self.path, version=self.version)
        except TableNotFoundError:
            raise DeltaSourceError(f"source {self.name!r}: no Delta table at {self.path}") from None
        except Exception as exc:  # e.g. a version that does not exist or was vacuumed
            if self.version is not None:
                raise DeltaSourceError(f"source {self.name!r}: version {self.version} of {self.path} cannot be read: {exc}") from None
            raise

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(self.table().schema().to_arrow())

    def validate(self, config: RepoConfig) -> None:
        schema = self.arrow_schema()
        for column, role in ((self.timestamp_field, "timestamp_field"), (self.created_timestamp_column, "created_timestamp_column")):
            if not column:
                continue
            if column not in schema.names:
                raise DeltaSourceError(f"source {self.name!r}: {role} {column!r} is not a column of {self.path} (columns: {', '.join(schema.names)})")
            if not pa.types.is_timestamp(schema.field(column).type):
                raise DeltaSourceError(f"source {self.name!r}: {role} {column!r} is {schema.field(column).type}, not a timestamp")

    @staticmethod
    def source_datatype_to_feast_value_type() -> Callable[[str], ValueType]:
        return pa_to_feast_value_type

    def get_table_column_names_and_types(self, config: RepoConfig) -> Iterable[tuple[str, str]]:
        return [(f.name, _feast_type_name(f.type)) for f in self.arrow_schema()]

    def get_table_query_string(self) -> str:
        return f"delta:{self.path}"


def _feast_type_name(arrow_type: pa.DataType) -> str:
    # pa_to_feast_value_type reads `large_string` as JSON; Delta strings are plain strings.
    return "string" if pa.types.is_large_string(arrow_type) else str(arrow_type)


def pinned(view: FeatureView, version: int) -> FeatureView:
    """A copy of `view` whose batch source reads Delta version `version`."""
    source = view.batch_source
    if not isinstance(source, DeltaSource):
        raise DeltaSourceError(f"feature view {view.name!r} is not backed by a DeltaSource")
    pinned_view = copy.copy(view)
    pinned_view.batch_source = copy.copy(source)
    pinned_view.batch_source.version = int(version)
    return pinned_view


class DeltaOfflineStoreConfig(FeastConfigBaseModel):
    """feature_store.yaml: `offline_store: {type: lakehouse.features.feast_delta.DeltaOfflineStore}`."""

    type: StrictStr = "lakehouse.features.feast_delta.DeltaOfflineStore"


class DeltaRetrievalJob(RetrievalJob):
    def __init__(self, compute: Callable[[], pa.Table], full_feature_names: bool = False, on_demand_feature_views=None, metadata: RetrievalMetadata | None = None):
        self._compute = compute
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views or []
        self._metadata = metadata

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._on_demand_feature_views

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return self._compute()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._compute().to_pandas()

    def persist(self, storage, allow_overwrite: bool = False, timeout: int | None = None):
        raise NotImplementedError("saved datasets are not supported by the Delta offline store; write to_arrow() to a Delta table instead")


@dataclass(frozen=True)
class ViewRead:
    """One feature view's part of a point-in-time join, in source column names."""

    name: str
    source: DeltaSource
    join_keys: tuple[str, ...]  # source columns
    entity_keys: tuple[str, ...]  # the entity columns they match, in the same order
    features: tuple[str, ...]  # source columns
    outputs: tuple[str, ...]  # output column names, one per feature
    ttl: timedelta | None
    timestamp_output: str | None = None  # if set, also output the matched feature row's event time


def _q(identifier: str) -> str:
    """A quoted DuckDB identifier (column and view names come from feature definitions, never values)."""
    return '"' + identifier.replace('"', '""') + '"'


def _utc_micros(table: pa.Table, column: str) -> pa.Table:
    index = table.schema.get_field_index(column)
    field = table.schema.field(index)
    if not pa.types.is_timestamp(field.type):
        raise DeltaSourceError(f"entity column {column!r} is {field.type}, not a timestamp")
    # Naive entity timestamps are UTC, as in Feast's own stores.
    values = table.column(index).cast(pa.timestamp(field.type.unit, tz=field.type.tz or "UTC")).cast(pa.timestamp("us", tz="UTC"))
    return table.set_column(index, pa.field(column, values.type), values)


def _check_types(read: ViewRead, view: FeatureView) -> None:
    schema = read.source.arrow_schema()
    by_output = {f.name: f for f in view.features}
    wanted = {read.source.timestamp_field, read.source.created_timestamp_column, *read.join_keys, *read.features} - {""}
    missing = sorted(wanted - set(schema.names))
    if missing:
        raise DeltaSourceError(f"feature view {view.name!r}: columns {missing} are not in {read.source.path} (columns: {', '.join(schema.names)})")
    for column, output in zip(read.features, read.outputs):
        feature = by_output.get(output.split("__", 1)[-1]) or by_output.get(output)
        if feature is None:
            continue
        stored = pa_to_feast_value_type(_feast_type_name(schema.field(column).type))
        declared = feature.dtype.to_value_type()
        if stored != declared and (declared, stored) not in _WIDENINGS:
            raise DeltaSourceError(f"feature view {view.name!r}: feature {feature.name!r} is declared {declared.name} but column {column!r} of {read.source.path} is {schema.field(column).type}")


# (declared, stored) pairs where the stored values always fit the declared type.
_WIDENINGS = {(ValueType.INT64, ValueType.INT32), (ValueType.DOUBLE, ValueType.FLOAT)}


def point_in_time_join(entity: pa.Table, timestamp_column: str, reads: list[ViewRead]) -> pa.Table:
    """Feast's point-in-time join of `entity` with each view, in one DuckDB query of ASOF LEFT JOINs."""
    if timestamp_column not in entity.column_names:
        raise DeltaSourceError(f"entity rows have no {timestamp_column!r} column (columns: {', '.join(entity.column_names)})")
    entity = _utc_micros(entity, timestamp_column)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        # Numbered before DuckDB sees them, so the result can be put back in entity order.
        row_id = "__entity_row"
        con.register("__entity_arrow", entity.append_column(row_id, pa.array(np.arange(entity.num_rows, dtype=np.int64))))
        steps = ["step_0 AS (SELECT * FROM __entity_arrow)"]
        # Feature rows newer than every entity row can never match: skip them in the scan.
        newest = pc.max(entity.column(timestamp_column)).as_py()
        params: dict[str, object] = {"newest": newest or datetime.max.replace(tzinfo=timezone.utc)}
        for i, read in enumerate(reads):
            con.register(f"__view_{i}", read.source.table().to_pyarrow_dataset())
            ts, created = read.source.timestamp_field, read.source.created_timestamp_column
            columns = [f"{_q(k)} AS __k{j}" for j, k in enumerate(read.join_keys)] + [f"{_q(c)} AS __f{j}" for j, c in enumerate(read.features)]
            # Of rows with the same keys and event time, the latest created one (ASOF takes one row per time).
            tie_break = ""
            if created:
                partition = ", ".join([_q(k) for k in read.join_keys] + [_q(ts)])
                tie_break = f" QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {_q(created)} DESC NULLS LAST) = 1"
            steps.append(f"view_{i} AS (SELECT {', '.join(columns)}, {_q(ts)} AS __ts FROM __view_{i} WHERE {_q(ts)} <= $newest{tie_break})")
            on = [f"s.{_q(e)} = v.__k{j}" for j, e in enumerate(read.entity_keys)] + [f"s.{_q(timestamp_column)} >= v.__ts"]
            matched = [(f"v.__f{j}", out) for j, out in enumerate(read.outputs)] + ([("v.__ts", read.timestamp_output)] if read.timestamp_output else [])
            if read.ttl:
                params[f"ttl_{i}"] = read.ttl
                values = [f"CASE WHEN v.__ts >= s.{_q(timestamp_column)} - $ttl_{i} THEN {value} END AS {_q(out)}" for value, out in matched]
            else:
                values = [f"{value} AS {_q(out)}" for value, out in matched]
            steps.append(f"step_{i + 1} AS (SELECT s.*, {', '.join(values)} FROM step_{i} s ASOF LEFT JOIN view_{i} v ON {' AND '.join(on)})")
        joined = con.sql(f"WITH {', '.join(steps)} SELECT * FROM step_{len(reads)}", params=params).to_arrow_table()
    finally:
        con.close()
    # Back to entity order: row_id is a permutation of 0..n-1, so invert it instead of sorting.
    positions = np.empty(joined.num_rows, dtype=np.int64)
    positions[joined.column(row_id).to_numpy()] = np.arange(joined.num_rows)
    return joined.take(positions).drop_columns([row_id])


class DeltaOfflineStore(OfflineStore):
    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry,
        project: str,
        full_feature_names: bool = False,
        feature_timestamps: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        """Feast's historical retrieval; `feature_timestamps=True` adds `<view>__feature_timestamp`,
        the event time of the feature row each entity row got (for leakage audits)."""
        if not isinstance(entity_df, pd.DataFrame):
            raise DeltaSourceError("the Delta offline store needs entity rows as a pandas DataFrame (SQL entity queries and entity-less retrieval are not supported)")
        timestamp_column = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
        if timestamp_column not in entity_df.columns:
            timestamp_column = infer_event_timestamp_from_entity_df(dict(zip(entity_df.columns, entity_df.dtypes)))
        requested: dict[str, list[str]] = {}
        for ref in feature_refs:
            view_name, feature = ref.split(":", 1)
            requested.setdefault(view_name, []).append(feature)
        reads = []
        for view in feature_views:
            name = view.projection.name_to_use()
            if name not in requested:
                continue
            reads.append(_view_read(view, registry, project, requested[name], full_feature_names, feature_timestamps))
            _check_types(reads[-1], view)
        entity = pa.Table.from_pandas(entity_df, preserve_index=False)
        timestamps = pd.to_datetime(entity_df[timestamp_column], utc=True)
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_df.columns if c != timestamp_column],
            min_event_timestamp=timestamps.min().to_pydatetime() if len(timestamps) else None,
            max_event_timestamp=timestamps.max().to_pydatetime() if len(timestamps) else None,
        )
        return DeltaRetrievalJob(lambda: point_in_time_join(entity, timestamp_column, reads), full_feature_names, odfvs, metadata)

    @staticmethod
    def pull_latest_from_table_or_query(config, data_source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date) -> RetrievalJob:
        return DeltaRetrievalJob(lambda: _pull(data_source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date, latest=True))

    @staticmethod
    def pull_all_from_table_or_query(config, data_source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column=None, start_date=None, end_date=None) -> RetrievalJob:
        return DeltaRetrievalJob(lambda: _pull(data_source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date, latest=False))


def _view_read(view: FeatureView, registry, project: str, features: list[str], full_feature_names: bool, feature_timestamps: bool) -> ViewRead:
    source = view.batch_source
    if not isinstance(source, DeltaSource):
        raise DeltaSourceError(f"feature view {view.name!r}: the Delta offline store reads DeltaSource batch sources, not {type(source).__name__}")
    to_source = {feature: column for column, feature in (source.field_mapping or {}).items()}
    join_keys = [column.name for column in view.entity_columns]
    entity_keys = [view.projection.join_key_map.get(k, k) for k in join_keys]
    prefix = view.projection.name_to_use()
    return ViewRead(
        name=view.name,
        source=source,
        join_keys=tuple(to_source.get(k, k) for k in join_keys),
        entity_keys=tuple(entity_keys),
        features=tuple(to_source.get(f, f) for f in features),
        outputs=tuple(f"{prefix}__{f}" if full_feature_names else f for f in features),
        ttl=view.ttl if view.ttl else None,
        timestamp_output=f"{prefix}{FEATURE_TIMESTAMP_SUFFIX}" if feature_timestamps else None,
    )


def _pull(source, join_key_columns, feature_name_columns, timestamp_field, created_timestamp_column, start_date, end_date, latest: bool) -> pa.Table:
    if not isinstance(source, DeltaSource):
        raise DeltaSourceError(f"the Delta offline store reads DeltaSource sources, not {type(source).__name__}")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("__source", source.table().to_pyarrow_dataset())
        columns = list(dict.fromkeys([*join_key_columns, *feature_name_columns, timestamp_field] + ([created_timestamp_column] if created_timestamp_column else [])))
        if not feature_name_columns:
            columns = ["*"]
        select = ", ".join(_q(c) if c != "*" else c for c in columns)
        if not join_key_columns:
            select += f", $dummy AS {_q(DUMMY_ENTITY_ID)}"
        where, params = [], {"dummy": DUMMY_ENTITY_VAL} if not join_key_columns else {}
        if start_date is not None:
            where.append(f"{_q(timestamp_field)} >= $start")
            params["start"] = start_date
        if end_date is not None:
            where.append(f"{_q(timestamp_field)} <= $end")
            params["end"] = end_date
        sql = f"SELECT {select} FROM __source" + (f" WHERE {' AND '.join(where)}" if where else "")
        if latest:
            order = [f"{_q(timestamp_field)} DESC"] + ([f"{_q(created_timestamp_column)} DESC NULLS LAST"] if created_timestamp_column else [])
            partition = ", ".join(_q(k) for k in join_key_columns) or "1"
            sql += f" QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {', '.join(order)}) = 1"
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()
