"""Reading and writing Delta tables: the one place that knows where tables live and how they commit.

Both engines go through here: deltalake (Arrow in and out, no JVM) and Spark with delta-spark.
Every commit is made by delta-rs, whichever engine wrote the data files: on an object store it
publishes a version with a conditional PUT, so two writers racing for a version never overwrite each
other's commit (delta-spark's own commit to s3a is a plain PUT that can; see `write_spark`).
Partition replacement always uses an explicit predicate over a date range, built from `date`
objects and a column the table's schema declares as a partition column, never from free text.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions

from lakehouse.tables.schemas import TableSchema

if TYPE_CHECKING:
    import pyarrow.dataset as ds  # importing it loads pandas: seconds for every Dagster process


T = TypeVar("T")
COMMIT_ATTEMPTS = 8
# Written into every commit this project makes (delta-rs custom metadata): the versions of the tables
# the commit was computed from, and an id that finds the commit again.
INPUTS_KEY = "lakehouse.inputs"
WRITE_ID_KEY = "lakehouse.write_id"
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # a null partition value, in a directory name


def fault_point(name: str) -> None:
    """Kill this process here when LAKEHOUSE_FAULT names this point: how tests crash a run between two commits."""
    if os.environ.get("LAKEHOUSE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _is_commit_conflict(exc: Exception) -> bool:
    return isinstance(exc, CommitFailedError)


def with_commit_retries(commit: Callable[[], T], attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run a Delta commit, retrying with jittered backoff when a concurrent writer won the race.

    Writers of different partitions (explicit predicates) do not conflict logically; the engines
    retry internally too, but under contention their own retries can run out.
    """
    for attempt in range(1, attempts + 1):
        try:
            return commit()
        except Exception as exc:
            if attempt == attempts or not _is_commit_conflict(exc):
                raise
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of partition dates of one partition column."""

    column: str
    start: date
    end: date

    def predicate(self, schema: TableSchema) -> str:
        self._check(schema)
        # Only date.isoformat() output reaches the predicate: digits and dashes.
        return f"{self.column} >= '{self.start.isoformat()}' AND {self.column} <= '{self.end.isoformat()}'"

    def partition_filters(self, schema: TableSchema) -> list[tuple[str, str, str]]:
        self._check(schema)
        return [(self.column, ">=", self.start.isoformat()), (self.column, "<=", self.end.isoformat())]

    def days(self) -> list[date]:
        return [date.fromordinal(n) for n in range(self.start.toordinal(), self.end.toordinal() + 1)]

    def _check(self, schema: TableSchema) -> None:
        if self.column not in schema.partition_by:
            raise ValueError(f"{self.column!r} is not a partition column of {schema.name}")
        if not (isinstance(self.start, date) and isinstance(self.end, date)) or self.start > self.end:
            raise ValueError(f"invalid date range {self.start!r}..{self.end!r}")


@dataclass(frozen=True)
class DataFile:
    """A Parquet file already written under a table's folder, which a commit adds to the table."""

    path: str  # relative to the table's root
    size: int
    rows: int
    modified_ms: int
    partition_values: dict[str, str | None]


def table_version(uri: str, storage_options: dict[str, str] | None = None) -> int | None:
    """Current version of the Delta table at `uri`, or None if there is no table there."""
    try:
        return DeltaTable(uri, storage_options=storage_options).version()
    except TableNotFoundError:
        return None


def table_row_count(uri: str, version: int | None = None, storage_options: dict[str, str] | None = None) -> int:
    """Rows in the table at `version`, from the Delta log's file statistics (no data scan)."""
    adds = pa.table(DeltaTable(uri, version=version, storage_options=storage_options).get_add_actions(flatten=True))
    return int(pc.sum(adds.column("num_records")).as_py() or 0)


def read_dataset(uri: str, version: int | None = None, storage_options: dict[str, str] | None = None) -> ds.Dataset:
    """The table at `uri` as of `version`, as a lazy pyarrow dataset over exactly that version's files."""
    return DeltaTable(uri, version=version, storage_options=storage_options).to_pyarrow_dataset()


def read_table(uri: str, version: int | None = None, columns: list[str] | None = None, storage_options: dict[str, str] | None = None) -> pa.Table:
    """The table at `uri` as of `version` (latest if None)."""
    return DeltaTable(uri, version=version, storage_options=storage_options).to_pyarrow_table(columns=columns)


class DeltaStore:
    def __init__(self, root: str, storage_options: dict[str, str] | None = None):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or None

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def table(self, table: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)

    def version(self, table: str) -> int | None:
        return table_version(self.uri(table), self.storage_options)

    def row_count(self, table: str, version: int | None = None) -> int:
        return table_row_count(self.uri(table), version, self.storage_options)

    def daily_rows(self, table: str, column: str, version: int | None = None) -> dict[date, int]:
        """Rows per day of a date partition column, from the log's statistics; empty if there is no table."""
        if self.version(table) is None:
            return {}
        adds = pa.table(self.table(table, version).get_add_actions(flatten=True)).to_pydict()
        counts: dict[date, int] = {}
        for value, rows in zip(adds[f"partition.{column}"], adds["num_records"]):
            day = value if isinstance(value, date) else date.fromisoformat(str(value))
            counts[day] = counts.get(day, 0) + (rows or 0)
        return counts

    def last_day(self, table: str, column: str, version: int | None = None) -> date:
        """The newest day of a date partition column holding rows, from the log (no data scan)."""
        days = [day for day, rows in self.daily_rows(table, column, version).items() if rows]
        if not days:
            raise ValueError(f"{table} has no rows")
        return max(days)

    def read_arrow(self, table: str, version: int | None = None, columns: list[str] | None = None) -> pa.Table:
        return read_table(self.uri(table), version, columns, self.storage_options)

    def dataset(self, table: str, version: int | None = None) -> ds.Dataset:
        return read_dataset(self.uri(table), version, self.storage_options)

    def history(self, table: str, version: int | None = None, limit: int | None = None) -> list[dict]:
        """What each commit recorded, newest first, from `version` (the latest if None) down."""
        latest = self.version(table)
        if latest is None:
            return []
        start = latest if version is None else version
        depth = None if limit is None else latest - start + limit
        # Commits delta-spark made (before Spark's writes were committed by delta-rs) hold the same keys as a JSON string.
        infos = [entry | json.loads(entry.get("userMetadata") or "{}") for entry in self.table(table).history(limit=depth)]
        return [info for info in infos if info.get("version", -1) <= start]

    def commit_info(self, table: str, version: int) -> dict:
        """What the commit that made `version` recorded; {} if it is gone from the log."""
        return next((info for info in self.history(table, version, limit=1) if info.get("version") == version), {})

    def commit_inputs(self, table: str, version: int) -> dict[str, int]:
        """The input tables and versions the commit of `version` was computed from."""
        return json.loads(self.commit_info(table, version).get(INPUTS_KEY) or "{}")

    def _version_written(self, table: str, write_id: str) -> int:
        """The version our commit made: the latest one may already be another writer's."""
        for limit in (8, None):
            for info in self.history(table, limit=limit):
                if info.get(WRITE_ID_KEY) == write_id:
                    return info["version"]
        raise LookupError(f"the commit {write_id} to {table} is not in its log")

    def write_arrow(
        self, schema: TableSchema, data: pa.Table, replace: DateRange | None = None, inputs: dict[str, int] | None = None,
        append: bool = False, properties: dict[str, str] | None = None,
    ) -> int:
        """Commit `data` to `schema`'s table: appended, or replacing the partitions in `replace`, or the whole table.

        `inputs` (table -> version it was computed from) and `properties` are recorded in the commit.
        Returns the version committed.
        """
        data = data.select(list(schema.column_names)).cast(schema.arrow())
        info = _commit_metadata(inputs, properties)
        def commit() -> None:
            exists = self.version(schema.name) is not None
            write_deltalake(
                self.uri(schema.name),
                data,
                mode="append" if append else "overwrite",
                predicate=replace.predicate(schema) if (replace and exists and not append) else None,
                partition_by=list(schema.partition_by) or None,
                schema_mode="merge",  # a column added to the schema reaches a table written before it
                storage_options=self.storage_options,
                commit_properties=CommitProperties(custom_metadata=info, max_commit_retries=25),
            )

        with_commit_retries(commit)
        return self._version_written(schema.name, info[WRITE_ID_KEY])

    def commit_files(
        self, schema: TableSchema, files: list[DataFile], replace: DateRange | None = None, inputs: dict[str, int] | None = None,
        append: bool = False, properties: dict[str, str] | None = None,
    ) -> int:
        """Commit data files already written under the table's folder, with `write_arrow`'s modes and
        recording rules. Returns the version committed."""
        if replace is not None and not append:
            outside = sorted({f.partition_values.get(replace.column) for f in files} - {d.isoformat() for d in replace.days()}, key=str)
            if outside:  # as delta-rs refuses rows outside a predicate: they would sit beside the rows they should replace
                raise ValueError(f"{schema.name}: rows for {replace.column} {', '.join(map(str, outside))} are outside the range {replace.start}..{replace.end} they replace")
        info = _commit_metadata(inputs, properties)
        actions = [AddAction(f.path, f.size, f.partition_values, f.modified_ms, True, json.dumps({"numRecords": f.rows})) for f in files]
        options = CommitProperties(custom_metadata=info, max_commit_retries=25)
        partition_by = list(schema.partition_by) or None
        delta_schema = DeltaSchema.from_arrow(schema.arrow())

        def commit() -> None:
            if self.version(schema.name) is None:
                try:
                    create_table_with_add_actions(self.uri(schema.name), delta_schema, actions, mode="error", partition_by=partition_by,
                                                  storage_options=self.storage_options, commit_properties=options)
                    return
                except Exception:
                    if self.version(schema.name) is None:
                        raise
                    # Another writer created the table first: add to it as below.
            self.table(schema.name).create_write_transaction(
                actions, mode="append" if append else "overwrite", schema=delta_schema, partition_by=partition_by,
                partition_filters=replace.partition_filters(schema) if (replace and not append) else None, commit_properties=options,
            )

        with_commit_retries(commit)
        return self._version_written(schema.name, info[WRITE_ID_KEY])

    def read_spark(self, spark, table: str, version: int | None = None):
        """The table as of `version` (the latest if None), as a Spark DataFrame.

        delta-rs reads the log and lists the version's files; Spark reads those as Parquet, typed by
        the table's schema. delta-spark's own reader would replay the log with Spark jobs first:
        25-35 s in a fresh process, on every run. A table that plain Parquet cannot read (a reader
        version above 1: column mapping, deletion vectors) or whose file paths do not spell its
        partition values goes through delta-spark.
        """
        from pyspark.sql.types import StructType

        log = self.table(table, version)
        folders = _files_by_folder(log, self.uri(table))
        if folders is None:
            return spark.read.format("delta").option("versionAsOf", log.version()).load(self.uri(table))
        schema = StructType.fromJson(json.loads(log.schema().to_json()))
        if not folders:
            return spark.createDataFrame([], schema)
        # One read per folder: Spark takes the partition values from the directories under basePath,
        # and refuses files whose directories hang from different folders in one read.
        reads = [spark.read.schema(schema).option("basePath", f"{self.uri(table)}/{folder}".rstrip("/")).parquet(*files) for folder, files in folders.items()]
        return functools.reduce(lambda a, b: a.unionByName(b), reads).select(*schema.fieldNames())

    def write_spark(
        self, schema: TableSchema, df, replace: DateRange | None = None, inputs: dict[str, int] | None = None,
        append: bool = False, properties: dict[str, str] | None = None,
    ) -> int:
        """Commit a Spark DataFrame, with the same modes and recording rules as `write_arrow`.

        Spark's executors write the Parquet files, in parallel, into a folder of their own under the
        table's; delta-rs then commits them (`commit_files`). Nothing is visible until that commit, and
        files of a write that failed before it are unreferenced, for vacuum to delete.
        """
        from pyspark.sql import functions as F

        df = df.select([F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.spark().fields])
        folder = f"spark-{uuid.uuid4().hex}"
        df.write.mode("errorifexists").partitionBy(*schema.partition_by).parquet(f"{self.uri(schema.name)}/{folder}")
        return self.commit_files(schema, _files_written(df.sparkSession, self.uri(schema.name), folder), replace, inputs, append, properties)


def _files_by_folder(log: DeltaTable, root: str) -> dict[str, list[str]] | None:
    """The data files of `log`'s version, as URIs under the table's `root`, by the folder their
    partition directories hang from (the root, or a Spark write's folder); None if Spark cannot read
    them as Parquet with the partition values the log records."""
    if log.protocol().min_reader_version > 1:
        return None
    columns = log.metadata().partition_columns
    adds = pa.table(log.get_add_actions(flatten=True)).select(["path", *(f"partition.{c}" for c in columns)]).to_pylist()
    folders: dict[str, list[str]] = {}
    for add in adds:
        path = unquote(add["path"])
        if "://" in path or path.startswith("/") or any(ch in path for ch in "*?[]{}\\"):
            return None  # absolute (a shallow clone's), or a glob Spark would expand
        *dirs, _ = path.split("/")
        folder, named = dirs[: len(dirs) - len(columns)], dirs[len(dirs) - len(columns):]
        spelled = [f"{c}={_HIVE_NULL if add[f'partition.{c}'] is None else add[f'partition.{c}']}" for c in columns]
        if named != spelled or any("=" in part for part in folder):
            return None
        folders.setdefault("/".join(folder), []).append(f"{root}/{path}")
    return folders


def _files_written(spark, table_uri: str, folder: str) -> list[DataFile]:
    """The Parquet files Spark wrote under `table_uri/folder`, listed through Spark's own file system
    (the same credentials), with their row counts from the Parquet footers."""
    jvm = spark._jvm
    conf = spark._jsc.hadoopConfiguration()
    root = jvm.org.apache.hadoop.fs.Path(f"{table_uri}/{folder}")
    fs = root.getFileSystem(conf)
    if fs.getScheme() == "file":
        fs = fs.getRaw()  # which lists the checksum files Hadoop writes beside local ones, to delete them
    prefix = fs.makeQualified(root).toString().rstrip("/") + "/"
    files = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        relative = status.getPath().toString().removeprefix(prefix)
        if relative.endswith(".crc"):
            fs.delete(status.getPath(), False)  # hidden: vacuum would never delete it
            continue
        if not relative.endswith(".parquet") or any(part.startswith(("_", ".")) for part in relative.split("/")):
            continue
        reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromStatus(status, conf))
        try:
            rows = reader.getRecordCount()
        finally:
            reader.close()
        partition_values = {}
        for part in relative.split("/")[:-1]:
            key, value = part.split("=", 1)
            value = unquote(value)
            partition_values[key] = None if value == _HIVE_NULL else value
        files.append(DataFile(f"{folder}/{relative}", status.getLen(), rows, status.getModificationTime(), partition_values))
    return files


def _commit_metadata(inputs: dict[str, int] | None, properties: dict[str, str] | None) -> dict[str, str]:
    return (properties or {}) | {WRITE_ID_KEY: uuid.uuid4().hex, INPUTS_KEY: json.dumps(dict(sorted((inputs or {}).items())))}
