"""A Feast offline store for Delta Lake tables: read through the Delta log with deltalake, joined in DuckDB.

Plugged in through Feast's own extension point, so the ordinary CLI and SDK work on it:

    offline_store:
      type: lakehouse.features.feast_delta.DeltaOfflineStore

and feature views use `DeltaSource(path=..., timestamp_field=...)` as their batch source.

The whole of Feast's offline-store contract:
- historical retrieval, with Feast's point-in-time semantics (`lakehouse.features.point_in_time`),
  `field_mapping` applied to every column (timestamps included), `filter_by_created_timestamp`,
  and retrieval without entity rows (every key and event time between `start_date` and `end_date`);
- the pulls that materialization, saved datasets and feature-log reads use;
- `offline_write_batch` (`store.write_to_offline_store`, push sources in `PushMode.OFFLINE`): one
  Delta append per batch, cast to the table's schema;
- `write_logged_features` (what `feast serve` logs for a feature service): appended to the Delta
  table of a `DeltaLoggingDestination`;
- saved datasets (`store.create_saved_dataset`, `RetrievalJob.persist`): written as a Delta table
  whose version is recorded in the registry, so a saved dataset reads back the rows it saved even
  after the table is overwritten.
Feast's own `FileSource` (Delta or Parquet) is read as a batch source, and Feast's file destinations
for saved datasets and logs are written, for callers that hand the store Feast's defaults; offline
writes go to Delta tables only.

A source can be pinned to a Delta version (`DeltaSource(version=N)`, or `pinned(view, N)` for one
retrieval): that is how a past training set is rebuilt after the table was overwritten, deleted
from or compacted (as long as that version has not been vacuumed away).

Credentials for object storage come from the environment (deltalake reads AWS_* etc. itself);
nothing secret is stored in the registry.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError
from feast.data_format import DeltaFormat
from feast.data_source import DataSource
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_logging import (
    LOG_DATE_FIELD,
    LOG_TIMESTAMP_FIELD,
    LoggingConfig,
    LoggingDestination,
    LoggingSource,
)
from feast.feature_view import DUMMY_ENTITY_ID, DUMMY_ENTITY_VAL, FeatureView
from feast.infra.offline_stores.file_source import (
    FileLoggingDestination,
    FileSource,
    SavedDatasetFileStorage,
)
from feast.infra.offline_stores.offline_store import OfflineStore, RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import (
    DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL,
    infer_event_timestamp_from_entity_df,
)
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.protos.feast.core.FeatureService_pb2 import LoggingConfig as LoggingConfigProto
from feast.protos.feast.core.SavedDataset_pb2 import SavedDatasetStorage as SavedDatasetStorageProto
from feast.repo_config import FeastConfigBaseModel, RepoConfig
from feast.saved_dataset import SavedDatasetStorage
from feast.type_map import pa_to_feast_value_type
from feast.utils import compute_non_entity_date_range
from feast.value_type import ValueType
from pydantic import StrictStr

from lakehouse.features.point_in_time import (
    PointInTimeError,
    ViewRead,
    entity_rows_between,
    point_in_time_join,
    quoted,
    utc_duckdb,
)
from lakehouse.tables.storage import table_version

SOURCE_CLASS = "lakehouse.features.feast_delta.DeltaSource"
FEATURE_TIMESTAMP_SUFFIX = "__feature_timestamp"
# Commit info on every Delta commit this store makes: which Feast operation wrote it, and for what.
WRITER_KEY = "lakehouse.writer"


class DeltaSourceError(ValueError):
    """A Delta source that cannot serve a retrieval: missing table, missing column, wrong type."""


class DeltaSource(DataSource):
    """A Delta table as a Feast batch source, optionally pinned to one version."""

    def __init__(
        self,
        *,
        path: str,
        timestamp_field: str = "",
        name: str | None = None,
        created_timestamp_column: str = "",
        field_mapping: dict[str, str] | None = None,
        version: int | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str = "",
    ):
        if version is not None and (
            not isinstance(version, int) or isinstance(version, bool) or version < 0
        ):
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
        return (
            isinstance(other, DeltaSource)
            and super().__eq__(other)
            and (self.path, self.version) == (other.path, other.version)
        )

    def source_type(self) -> DataSourceProto.SourceType.ValueType:
        return DataSourceProto.CUSTOM_SOURCE

    def _to_proto_impl(self) -> DataSourceProto:
        proto = DataSourceProto(
            name=self.name,
            type=DataSourceProto.CUSTOM_SOURCE,
            data_source_class_type=SOURCE_CLASS,
            field_mapping=self.field_mapping,
            custom_options=DataSourceProto.CustomSourceOptions(
                configuration=json.dumps({"path": self.path, "version": self.version}).encode()
            ),
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

    def delta_table(self) -> DeltaTable:
        try:
            return DeltaTable(self.path, version=self.version)
        except TableNotFoundError:
            raise DeltaSourceError(f"source {self.name!r}: no Delta table at {self.path}") from None
        except Exception as exc:  # e.g. a version that does not exist or was vacuumed
            if self.version is not None:
                raise DeltaSourceError(
                    f"source {self.name!r}: version {self.version} of {self.path} cannot be read: {exc}"
                ) from None
            raise

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(self.delta_table().schema().to_arrow())

    def validate(self, config: RepoConfig) -> None:
        schema = self.arrow_schema()
        for name, role in (
            (self.timestamp_field, "timestamp_field"),
            (self.created_timestamp_column, "created_timestamp_column"),
        ):
            if not name:
                continue
            column = stored_column(self, name)
            if column not in schema.names:
                raise DeltaSourceError(
                    f"source {self.name!r}: {role} {column!r} is not a column of {self.path} "
                    f"(columns: {', '.join(schema.names)})"
                )
            if not pa.types.is_timestamp(schema.field(column).type):
                raise DeltaSourceError(
                    f"source {self.name!r}: {role} {column!r} is {schema.field(column).type}, not a timestamp"
                )

    @staticmethod
    def source_datatype_to_feast_value_type() -> Callable[[str], ValueType]:
        return pa_to_feast_value_type

    def get_table_column_names_and_types(self, config: RepoConfig) -> Iterable[tuple[str, str]]:
        return [(f.name, feast_type_name(f.type)) for f in self.arrow_schema()]

    def get_table_query_string(self) -> str:
        return f"delta:{self.path}"


def stored_column(source: DataSource, name: str) -> str:
    """The stored column behind `name`: field_mapping maps stored columns to the names Feast uses."""
    for column, mapped in (source.field_mapping or {}).items():
        if mapped == name:
            return column
    return name


def _is_list(t: pa.DataType) -> bool:
    return (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
    )


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    )


def feast_type_name(arrow_type: pa.DataType) -> str:
    """An Arrow type spelled the way Feast's `pa_to_feast_value_type` reads it."""
    if pa.types.is_dictionary(arrow_type):
        return feast_type_name(arrow_type.value_type)
    if _is_list(arrow_type):
        # Delta names list elements `element`; Feast only reads `item`.
        return f"list<item: {feast_type_name(arrow_type.value_type)}>"
    if _is_string(arrow_type):
        return "string"  # Feast reads `large_string` as JSON; Delta strings are plain strings
    if _is_binary(arrow_type):
        return "binary"
    if pa.types.is_date(arrow_type):
        return "timestamp[us]"
    if pa.types.is_decimal(arrow_type):
        return "double"
    return str(arrow_type)


# The kind of value each Feast type holds, and the kind of each Arrow type, so a declared type can be
# checked against a stored one the way Feast's stores treat them: Int32 over int64 and Float32 over
# float64 are fine (Feast casts when it serves), a string over numbers is not.
_KINDS = {
    "int": {ValueType.INT32, ValueType.INT64},
    "float": {ValueType.FLOAT, ValueType.DOUBLE, ValueType.DECIMAL},
    "string": {ValueType.STRING, ValueType.UUID, ValueType.TIME_UUID},
    "bytes": {ValueType.BYTES, ValueType.PDF_BYTES, ValueType.IMAGE_BYTES},
    "bool": {ValueType.BOOL},
    "time": {ValueType.UNIX_TIMESTAMP, ValueType.ZONED_TIMESTAMP},
    "json": {ValueType.JSON},
    "nested": {ValueType.MAP, ValueType.STRUCT, ValueType.SCALAR_MAP},
}
# (declared, stored) kinds that Feast converts without loss of meaning.
_ACCEPTED = {("float", "int"), ("json", "string"), ("json", "nested"), ("nested", "string")}


def _declared_kind(value_type: ValueType) -> tuple[str | None, bool]:
    """(kind, is a list) of a declared Feast type; kind None accepts anything."""
    name = value_type.name
    if name in ("VALUE_LIST", "VALUE_SET"):
        return None, True
    for suffix in ("_LIST", "_SET"):
        if name.endswith(suffix):
            base, _ = _declared_kind(ValueType[name.removesuffix(suffix)])
            return base, True
    return next((kind for kind, types in _KINDS.items() if value_type in types), None), False


def _stored_kind(arrow_type: pa.DataType) -> tuple[str | None, bool]:
    """(kind, is a list) of a stored Arrow type; kind None for nulls and types no feature kind covers."""
    if pa.types.is_dictionary(arrow_type):
        return _stored_kind(arrow_type.value_type)
    if _is_list(arrow_type):
        return _stored_kind(arrow_type.value_type)[0], True
    for kind, test in (
        ("int", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("float", pa.types.is_decimal),
        ("bool", pa.types.is_boolean),
        ("string", _is_string),
        ("bytes", _is_binary),
        ("time", lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t)),
        ("nested", lambda t: pa.types.is_struct(t) or pa.types.is_map(t)),
    ):
        if test(arrow_type):
            return kind, False
    return None, False


def type_mismatch(declared: ValueType, stored: pa.DataType) -> bool:
    """Whether values stored as `stored` cannot serve a feature declared `declared`."""
    (want, want_list), (have, have_list) = _declared_kind(declared), _stored_kind(stored)
    if pa.types.is_null(stored):
        return False  # a column of nulls fits any declared type
    if want_list != have_list:
        return True
    return want is not None and have is not None and want != have and (want, have) not in _ACCEPTED


def pinned(view: FeatureView, version: int) -> FeatureView:
    """A copy of `view` whose batch source reads Delta version `version`."""
    source = view.batch_source
    if not isinstance(source, DeltaSource):
        raise DeltaSourceError(f"feature view {view.name!r} is not backed by a DeltaSource")
    pinned_view = copy.copy(view)
    pinned_view.batch_source = copy.copy(source)
    pinned_view.batch_source.version = int(version)
    return pinned_view


class SavedDatasetDeltaStorage(SavedDatasetStorage):
    """Where a saved dataset lives: a Delta table, and the version its rows were written as.

    The version is filled in when the dataset is persisted, and recorded in the registry with it.
    """

    _proto_attr_name = "custom_storage"

    def __init__(self, path: str, version: int | None = None):
        self.path = path
        self.version = version

    @staticmethod
    def from_proto(storage_proto: SavedDatasetStorageProto) -> SavedDatasetDeltaStorage:
        options = json.loads(storage_proto.custom_storage.configuration)
        return SavedDatasetDeltaStorage(path=options["path"], version=options.get("version"))

    def to_proto(self) -> SavedDatasetStorageProto:
        options = json.dumps({"path": self.path, "version": self.version}).encode()
        return self._custom_storage_proto(
            DataSourceProto.CustomSourceOptions(configuration=options)
        )

    def to_data_source(self) -> DeltaSource:
        return DeltaSource(name=f"saved_dataset:{self.path}", path=self.path, version=self.version)


class DeltaLoggingDestination(LoggingDestination):
    """Feature logs (what `feast serve` served, and for which request) appended to a Delta table."""

    _proto_kind = "lakehouse.features.feast_delta.DeltaLoggingDestination"

    def __init__(self, *, path: str):
        self.path = path

    @classmethod
    def from_proto(cls, config_proto: LoggingConfigProto) -> DeltaLoggingDestination:
        return DeltaLoggingDestination(path=config_proto.custom_destination.config["path"])

    def to_proto(self) -> LoggingConfigProto:
        return LoggingConfigProto(
            custom_destination=LoggingConfigProto.CustomDestination(
                kind=self._proto_kind, config={"path": self.path}
            )
        )

    def to_data_source(self) -> DeltaSource:
        return DeltaSource(
            name=f"feature_log:{self.path}", path=self.path, timestamp_field=LOG_TIMESTAMP_FIELD
        )


class DeltaOfflineStoreConfig(FeastConfigBaseModel):
    """feature_store.yaml: `offline_store: {type: lakehouse.features.feast_delta.DeltaOfflineStore}`."""

    type: StrictStr = "lakehouse.features.feast_delta.DeltaOfflineStore"


def _file_uri(config: RepoConfig | None, path: str) -> str:
    if (
        config is not None
        and config.repo_path is not None
        and "://" not in path
        and not Path(path).is_absolute()
    ):
        return str(Path(config.repo_path) / path)
    return path


def _dataset(source: DataSource, config: RepoConfig | None = None) -> ds.Dataset:
    """The rows of a Delta source, or of one of Feast's file sources (Delta or Parquet)."""
    if isinstance(source, DeltaSource):
        return source.delta_table().to_pyarrow_dataset()
    if isinstance(source, FileSource):
        uri = _file_uri(config, source.path)
        if isinstance(source.file_format, DeltaFormat):
            return DeltaTable(uri).to_pyarrow_dataset()
        return ds.dataset(uri, format="parquet")
    raise DeltaSourceError(
        f"the Delta offline store reads DeltaSource (or Feast FileSource) sources, not {type(source).__name__}"
    )


class DeltaRetrievalJob(RetrievalJob):
    def __init__(
        self,
        compute: Callable[[], pa.Table],
        full_feature_names: bool = False,
        on_demand_feature_views=None,
        metadata: RetrievalMetadata | None = None,
        config: RepoConfig | None = None,
    ):
        self._compute = compute
        self._full_feature_names = full_feature_names
        self._on_demand_feature_views = on_demand_feature_views or []
        self._metadata = metadata
        self._config = config

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

    def persist(
        self,
        storage: SavedDatasetStorage,
        allow_overwrite: bool = False,
        timeout: int | None = None,
    ) -> None:
        """Write the retrieved rows (on-demand features included) as a saved dataset.

        To a `SavedDatasetDeltaStorage`: one Delta commit, whose version is recorded on `storage`
        (and so in the registry); an existing table is replaced only with `allow_overwrite`.
        Feast's `SavedDatasetFileStorage` is written as a Delta table or Parquet, by its format.
        """
        if isinstance(storage, SavedDatasetDeltaStorage):
            uri, delta = storage.path, True
        elif isinstance(storage, SavedDatasetFileStorage):
            uri, delta = (
                _file_uri(self._config, storage.file_options.uri),
                isinstance(storage.file_options.file_format, DeltaFormat),
            )
        else:
            raise DeltaSourceError(
                "the Delta offline store persists to SavedDatasetDeltaStorage "
                f"(or Feast's SavedDatasetFileStorage), not {type(storage).__name__}"
            )
        exists = table_version(uri) is not None if delta else Path(uri).exists()
        if exists and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=uri)
        rows = self.to_arrow(timeout=timeout)
        if not delta:
            if uri.endswith(".parquet"):
                pq.write_table(rows, uri)
            else:
                pq.write_to_dataset(rows, root_path=uri)
            return
        write_deltalake(
            uri,
            rows,
            mode="overwrite",
            schema_mode="overwrite",
            commit_properties=_commit("saved_dataset"),
        )
        if isinstance(storage, SavedDatasetDeltaStorage):
            storage.version = table_version(uri)

    def supports_remote_storage_export(self) -> bool:
        return False


def _commit(operation: str, **details: str) -> CommitProperties:
    return CommitProperties(
        custom_metadata={
            WRITER_KEY: f"feast.{operation}",
            **{f"lakehouse.{k}": v for k, v in details.items()},
        }
    )


class DeltaOfflineStore(OfflineStore):
    supports_filter_by_created_timestamp = True

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
        filter_by_created_timestamp: bool = False,
        **kwargs,
    ) -> RetrievalJob:
        """Feast's historical retrieval; `feature_timestamps=True` adds `<view>__feature_timestamp`,
        the event time of the feature row each entity row got (for leakage audits), and
        `filter_by_created_timestamp=True` ignores feature rows created after the entity timestamp."""
        if entity_df is not None and not isinstance(entity_df, pd.DataFrame):
            raise DeltaSourceError(
                "the Delta offline store takes entity rows as a pandas DataFrame, or none with "
                "start_date/end_date (SQL entity queries are not supported)"
            )
        requested: dict[str, list[str]] = {}
        for ref in feature_refs:
            view_name, feature = ref.split(":", 1)
            requested.setdefault(view_name, []).append(feature)
        reads = []
        for view in feature_views:
            name = view.projection.name_to_use()
            if name in requested:
                reads.append(
                    _view_read(
                        view, requested[name], full_feature_names, feature_timestamps, config
                    )
                )
        odfvs = OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry)

        if entity_df is None:
            # Feast's non-entity mode: every (keys, event time) in the window, each with its features then.
            start, end = compute_non_entity_date_range(
                feature_views, kwargs.get("start_date"), kwargs.get("end_date")
            )
            timestamp_column = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
            entity_keys = list(dict.fromkeys(k for read in reads for k in read.entity_keys))
            metadata = RetrievalMetadata(
                features=feature_refs,
                keys=entity_keys,
                min_event_timestamp=start,
                max_event_timestamp=end,
            )
            entity_rows = lambda: entity_rows_between(reads, timestamp_column, start, end)  # noqa: E731
        else:
            timestamp_column = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
            if timestamp_column not in entity_df.columns:
                timestamp_column = infer_event_timestamp_from_entity_df(
                    dict(zip(entity_df.columns, entity_df.dtypes))
                )
            entity = pa.Table.from_pandas(entity_df, preserve_index=False)
            timestamps = pd.to_datetime(entity_df[timestamp_column], utc=True)
            metadata = RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in entity_df.columns if c != timestamp_column],
                min_event_timestamp=timestamps.min().to_pydatetime() if len(timestamps) else None,
                max_event_timestamp=timestamps.max().to_pydatetime() if len(timestamps) else None,
            )
            entity_rows = lambda: entity  # noqa: E731

        def compute() -> pa.Table:
            try:
                return point_in_time_join(
                    entity_rows(),
                    timestamp_column,
                    reads,
                    known_at_entity_time=filter_by_created_timestamp,
                )
            except PointInTimeError as exc:
                raise DeltaSourceError(str(exc)) from None

        return DeltaRetrievalJob(compute, full_feature_names, odfvs, metadata, config)

    @staticmethod
    def pull_latest_from_table_or_query(
        config,
        data_source,
        join_key_columns,
        feature_name_columns,
        timestamp_field,
        created_timestamp_column,
        start_date,
        end_date,
    ) -> RetrievalJob:
        return DeltaRetrievalJob(
            lambda: _pull(
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
                latest=True,
            ),
            config=config,
        )

    @staticmethod
    def pull_all_from_table_or_query(
        config,
        data_source,
        join_key_columns,
        feature_name_columns,
        timestamp_field,
        created_timestamp_column=None,
        start_date=None,
        end_date=None,
    ) -> RetrievalJob:
        return DeltaRetrievalJob(
            lambda: _pull(
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
                latest=False,
            ),
            config=config,
        )

    @staticmethod
    def offline_write_batch(
        config: RepoConfig,
        feature_view: FeatureView,
        table: pa.Table,
        progress: Callable[[int], object] | None,
    ) -> None:
        """Append `table` to the view's Delta table in one commit, cast to the table's schema.

        Columns must be exactly the table's (in any order); values that do not fit the stored type
        (an overflow, a string where a number is stored) fail the whole batch, and nothing is written.
        """
        source = feature_view.batch_source
        if isinstance(source, DeltaSource):
            if source.version is not None:
                raise DeltaSourceError(
                    f"feature view {feature_view.name!r}: its source is pinned to version "
                    f"{source.version}, a past state that cannot be written to"
                )
            uri = source.path
        elif isinstance(source, FileSource) and isinstance(source.file_format, DeltaFormat):
            uri = _file_uri(config, source.path)
        else:
            raise DeltaSourceError(
                f"feature view {feature_view.name!r}: the Delta offline store writes to Delta tables "
                f"(DeltaSource, or a FileSource in DeltaFormat), not {type(source).__name__}"
            )
        schema = pa.schema(DeltaTable(uri).schema().to_arrow())
        missing, extra = (
            sorted(set(schema.names) - set(table.column_names)),
            sorted(set(table.column_names) - set(schema.names)),
        )
        if missing or extra:
            raise DeltaSourceError(
                f"feature view {feature_view.name!r}: the batch's columns do not match {uri}: "
                f"missing {missing}, unexpected {extra}"
            )
        rows = pa.table(
            [_cast(table.column(f.name), f, feature_view.name) for f in schema], schema=schema
        )
        write_deltalake(
            uri,
            rows,
            mode="append",
            commit_properties=_commit("offline_write_batch", feature_view=feature_view.name),
        )
        if progress:
            progress(rows.num_rows)

    @staticmethod
    def write_logged_features(
        config: RepoConfig,
        data: pa.Table | Path,
        source: LoggingSource,
        logging_config: LoggingConfig,
        registry,
    ) -> None:
        """Append a batch of feature logs to the destination's Delta table (created on the first batch)."""
        destination = logging_config.destination
        if isinstance(data, (str, Path)):
            data = pq.read_table(data, use_threads=False, pre_buffer=False)
        if isinstance(destination, FileLoggingDestination):
            ds.write_dataset(
                data,
                base_dir=_file_uri(config, destination.path),
                basename_template=f"{uuid.uuid4().hex}-{{i}}.parquet",
                partitioning=destination.partition_by,
                format="parquet",
                existing_data_behavior="overwrite_or_ignore",
                use_threads=False,
            )
            return
        if not isinstance(destination, DeltaLoggingDestination):
            raise DeltaSourceError(
                "the Delta offline store logs features to a DeltaLoggingDestination "
                f"(or Feast's FileLoggingDestination), not {type(destination).__name__}"
            )
        schema = _delta_compatible(source.get_schema(registry))
        missing = sorted(set(schema.names) - set(data.column_names))
        if missing:
            raise DeltaSourceError(
                f"feature logs for {destination.path} lack the columns {missing} of the logging source's schema"
            )
        rows = data.select(schema.names).cast(schema)
        partition_by = [LOG_DATE_FIELD] if LOG_DATE_FIELD in rows.column_names else None
        write_deltalake(
            destination.path,
            rows,
            mode="append",
            partition_by=partition_by,
            commit_properties=_commit("write_logged_features"),
        )


def _delta_compatible(schema: pa.Schema) -> pa.Schema:
    """`schema` with its timestamps in microseconds, the only unit Delta stores."""
    return pa.schema(
        [
            pa.field(
                f.name,
                pa.timestamp("us", tz=f.type.tz) if pa.types.is_timestamp(f.type) else f.type,
                f.nullable,
            )
            for f in schema
        ]
    )


def _cast(column: pa.ChunkedArray, field: pa.Field, view: str) -> pa.ChunkedArray:
    if column.type == field.type:
        return column
    try:
        # Delta stores microseconds: finer timestamps are truncated, as any Delta writer does.
        return column.cast(field.type, safe=not pa.types.is_timestamp(field.type))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DeltaSourceError(
            f"feature view {view!r}: column {field.name!r} ({column.type}) does not fit the stored {field.type}: {exc}"
        ) from None


def _view_read(
    view: FeatureView,
    features: list[str],
    full_feature_names: bool,
    feature_timestamps: bool,
    config: RepoConfig | None,
) -> ViewRead:
    source = view.batch_source
    # Opened once: the type check and the join see the same table version.
    data = _dataset(source, config)  # a DeltaSource or Feast FileSource, or a clear error
    join_keys = [column.name for column in view.entity_columns]
    prefix = view.projection.name_to_use()
    read = ViewRead(
        name=view.name,
        data=data,
        timestamp=stored_column(source, source.timestamp_field),
        created=stored_column(source, source.created_timestamp_column)
        if source.created_timestamp_column
        else None,
        join_keys=tuple(stored_column(source, k) for k in join_keys),
        entity_keys=tuple(view.projection.join_key_map.get(k, k) for k in join_keys),
        features=tuple(stored_column(source, f) for f in features),
        outputs=tuple(f"{prefix}__{f}" if full_feature_names else f for f in features),
        ttl=view.ttl if view.ttl else None,
        timestamp_output=f"{prefix}{FEATURE_TIMESTAMP_SUFFIX}" if feature_timestamps else None,
    )
    _check_types(read, features, view, data.schema)
    return read


def _check_types(read: ViewRead, features: list[str], view: FeatureView, schema: pa.Schema) -> None:
    where = getattr(view.batch_source, "path", view.batch_source.name)
    wanted = {read.timestamp, read.created or "", *read.join_keys, *read.features} - {""}
    missing = sorted(wanted - set(schema.names))
    if missing:
        raise DeltaSourceError(
            f"feature view {view.name!r}: columns {missing} are not in {where} (columns: {', '.join(schema.names)})"
        )
    declared = {f.name: f.dtype.to_value_type() for f in view.features}
    for name, column in zip(features, read.features):
        stored = schema.field(column).type
        if name in declared and type_mismatch(declared[name], stored):
            raise DeltaSourceError(
                f"feature view {view.name!r}: feature {name!r} is declared {declared[name].name} "
                f"but column {column!r} of {where} is {stored}"
            )


def _pull(
    config,
    source,
    join_key_columns,
    feature_name_columns,
    timestamp_field,
    created_timestamp_column,
    start_date,
    end_date,
    latest: bool,
) -> pa.Table:
    with utc_duckdb() as con:
        con.register("__source", _dataset(source, config))
        columns = list(
            dict.fromkeys(
                [*join_key_columns, *feature_name_columns, timestamp_field]
                + ([created_timestamp_column] if created_timestamp_column else [])
            )
        )
        select = ", ".join(quoted(c) for c in columns) if feature_name_columns else "*"
        if not join_key_columns:
            select += f", $dummy AS {quoted(DUMMY_ENTITY_ID)}"
        where, params = [], {"dummy": DUMMY_ENTITY_VAL} if not join_key_columns else {}
        if start_date is not None:
            where.append(f"{quoted(timestamp_field)} >= $start")
            params["start"] = start_date
        if end_date is not None:
            where.append(f"{quoted(timestamp_field)} <= $end")
            params["end"] = end_date
        sql = f"SELECT {select} FROM __source" + (f" WHERE {' AND '.join(where)}" if where else "")
        if latest:
            order = [f"{quoted(timestamp_field)} DESC"] + (
                [f"{quoted(created_timestamp_column)} DESC NULLS LAST"]
                if created_timestamp_column
                else []
            )
            partition = ", ".join(quoted(k) for k in join_key_columns) or "1"
            sql += f" QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {', '.join(order)}) = 1"
        return con.sql(sql, params=params).to_arrow_table()
