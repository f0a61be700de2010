"""Reading and writing Delta tables: the one place that knows where tables live and how they commit.

Both engines go through here: deltalake (Arrow in and out, no JVM) and Spark with delta-spark.
Every commit is made by delta-rs, whichever engine wrote the data files: on an object store it
publishes a version with a conditional PUT, so two writers racing for a version never overwrite each
other's commit (delta-spark's own commit to s3a is a plain PUT that can; see `write_spark`).
Partition replacement always uses an explicit predicate over a date range, built from `date`
objects and a column the table's schema declares as a partition column, never from free text.

Writers that overlap in time (a backfill, a CLI run, the late-data sensor's runs) are safe by
construction, not by scheduling. Every commit records what it replaced (`lakehouse.range`) and the
versions of the tables it was computed from (`lakehouse.inputs`), and is made on top of exactly the
version that was checked, without delta-rs' own retries (which would resend data computed before
the race):
- a replacement computed from an older version of an input than the one that produced the rows it
  would replace is refused (`StaleInputError`): the newest input version always wins, and the
  caller recomputes from it;
- data computed from the table itself (a read-modify-write) is refused when another writer changed
  its range in between (`TableMovedError`);
- the first write creates the table or fails; it never replaces a table another writer created.
Every table keeps its whole log (`TABLE_PROPERTIES`): these lookups, and the publications of
cleaned_events, walk it.
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
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from lakehouse.tables.schemas import TableSchema

if TYPE_CHECKING:
    import pyarrow.dataset as ds  # importing it loads pandas: seconds for every Dagster process


T = TypeVar("T")
COMMIT_ATTEMPTS = 8
# A commit lost to a concurrent writer is checked and made again on the new version, this many times.
RACE_ATTEMPTS = 16
# Written into every commit this project makes (delta-rs custom metadata): the versions of the tables
# the commit was computed from, what it replaced, and an id that finds the commit again.
INPUTS_KEY = "lakehouse.inputs"
RANGE_KEY = "lakehouse.range"
WRITE_ID_KEY = "lakehouse.write_id"
# Set on every table this project creates, and on older tables at their next write. Checkpoints would
# otherwise delete log entries older than delta.logRetentionDuration (30 days), and with them the
# commits that say which batch published a date and which input versions produced it.
TABLE_PROPERTIES = {"delta.enableExpiredLogCleanup": "false"}
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


class StaleInputError(RuntimeError):
    """The table holds, in the range to replace, rows computed from a newer version of an input."""


class TableMovedError(RuntimeError):
    """Another writer changed the range since the version of the table the data was computed from."""


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of partition dates of one partition column."""

    column: str
    start: date
    end: date

    def predicate(self, schema: TableSchema | None = None) -> str:
        """The Delta predicate of the range; `schema`, when known, must declare the column a partition column."""
        self._check(schema)
        # Only date.isoformat() output and an identifier reach the predicate: digits, dashes, a column name.
        return f"{self.column} >= '{self.start.isoformat()}' AND {self.column} <= '{self.end.isoformat()}'"

    def partition_filters(self, schema: TableSchema) -> list[tuple[str, str, str]]:
        self._check(schema)
        return [
            (self.column, ">=", self.start.isoformat()),
            (self.column, "<=", self.end.isoformat()),
        ]

    def days(self) -> list[date]:
        return [
            date.fromordinal(n) for n in range(self.start.toordinal(), self.end.toordinal() + 1)
        ]

    def recorded(self) -> str:
        """What a commit records of the range it replaced (RANGE_KEY)."""
        return json.dumps(
            {"column": self.column, "start": self.start.isoformat(), "end": self.end.isoformat()}
        )

    def _check(self, schema: TableSchema | None) -> None:
        if not self.column.isidentifier():
            raise ValueError(f"{self.column!r} is not a column name")
        if schema is not None and self.column not in schema.partition_by:
            raise ValueError(f"{self.column!r} is not a partition column of {schema.name}")
        if (
            not (isinstance(self.start, date) and isinstance(self.end, date))
            or self.start > self.end
        ):
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


def table_row_count(
    uri: str, version: int | None = None, storage_options: dict[str, str] | None = None
) -> int:
    """Rows in the table at `version`, from the Delta log's file statistics (no data scan)."""
    adds = pa.table(
        DeltaTable(uri, version=version, storage_options=storage_options).get_add_actions(
            flatten=True
        )
    )
    return int(pc.sum(adds.column("num_records")).as_py() or 0)


def read_dataset(
    uri: str, version: int | None = None, storage_options: dict[str, str] | None = None
) -> ds.Dataset:
    """The table at `uri` as of `version`, as a lazy pyarrow dataset over exactly that version's files."""
    return DeltaTable(uri, version=version, storage_options=storage_options).to_pyarrow_dataset()


def read_table(
    uri: str,
    version: int | None = None,
    columns: list[str] | None = None,
    storage_options: dict[str, str] | None = None,
) -> pa.Table:
    """The table at `uri` as of `version` (latest if None)."""
    return DeltaTable(uri, version=version, storage_options=storage_options).to_pyarrow_table(
        columns=columns
    )


class DeltaStore:
    def __init__(self, root: str, storage_options: dict[str, str] | None = None):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or None
        self._properties_set: set[str] = set()  # tables known to carry TABLE_PROPERTIES

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

    def read_arrow(
        self, table: str, version: int | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        return read_table(self.uri(table), version, columns, self.storage_options)

    def dataset(self, table: str, version: int | None = None) -> ds.Dataset:
        return read_dataset(self.uri(table), version, self.storage_options)

    def history(
        self, table: str, version: int | None = None, limit: int | None = None
    ) -> list[dict]:
        """What each commit recorded, newest first, from `version` (the latest if None) down."""
        latest = self.version(table)
        if latest is None:
            return []
        start = latest if version is None else version
        depth = None if limit is None else latest - start + limit
        return [
            info
            for info in commit_history(self.table(table), depth)
            if info.get("version", -1) <= start
        ]

    def commit_info(self, table: str, version: int) -> dict:
        """What the commit that made `version` recorded; {} if it is gone from the log."""
        return next(
            (
                info
                for info in self.history(table, version, limit=1)
                if info.get("version") == version
            ),
            {},
        )

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
        self,
        schema: TableSchema,
        data: pa.Table,
        replace: DateRange | None = None,
        inputs: dict[str, int] | None = None,
        append: bool = False,
        properties: dict[str, str] | None = None,
        read_version: int | None = None,
    ) -> int:
        """Commit `data` to `schema`'s table: appended, or replacing the partitions in `replace`, or the whole table.

        `inputs` (table -> version it was computed from) and `properties` are recorded in the commit.
        `read_version`: the version of this table `data` was computed from, for a read-modify-write.
        Raises StaleInputError or TableMovedError (see the module's docstring) instead of committing.
        Returns the version committed.
        """
        data = data.select(list(schema.column_names)).cast(schema.arrow())
        info = commit_metadata(inputs, properties, None if append else replace or ALL)

        partition_by = list(schema.partition_by) or None
        options = CommitProperties(custom_metadata=info, max_commit_retries=0)

        def attempt(base: DeltaTable | None) -> None:
            # A column added to the schema reaches a table written before it (schema_mode="merge").
            if (
                base is None
            ):  # the table is created, or the write fails: never a replacement of another writer's new table
                write_deltalake(
                    self.uri(schema.name),
                    data,
                    mode="error",
                    partition_by=partition_by,
                    configuration=TABLE_PROPERTIES,
                    storage_options=self.storage_options,
                    commit_properties=options,
                )
            elif append:
                write_deltalake(
                    base,
                    data,
                    mode="append",
                    partition_by=partition_by,
                    schema_mode="merge",
                    commit_properties=options,
                )
            else:
                predicate = replace.predicate(schema) if replace else None
                write_deltalake(
                    base,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    partition_by=partition_by,
                    schema_mode="merge",
                    commit_properties=options,
                )

        self._commit(schema, attempt, replace, inputs, append, read_version)
        return self._version_written(schema.name, info[WRITE_ID_KEY])

    def commit_files(
        self,
        schema: TableSchema,
        files: list[DataFile],
        replace: DateRange | None = None,
        inputs: dict[str, int] | None = None,
        append: bool = False,
        properties: dict[str, str] | None = None,
        read_version: int | None = None,
    ) -> int:
        """Commit data files already written under the table's folder, with `write_arrow`'s modes and
        recording rules. Returns the version committed."""
        if replace is not None and not append:
            outside = sorted(
                {f.partition_values.get(replace.column) for f in files}
                - {d.isoformat() for d in replace.days()},
                key=str,
            )
            # as delta-rs refuses rows outside a predicate: they would sit beside the rows they should replace
            if outside:
                raise ValueError(
                    f"{schema.name}: rows for {replace.column} {', '.join(map(str, outside))} are outside "
                    f"the range {replace.start}..{replace.end} they replace"
                )
        info = commit_metadata(inputs, properties, None if append else replace or ALL)
        actions = [
            AddAction(
                f.path,
                f.size,
                f.partition_values,
                f.modified_ms,
                True,
                json.dumps({"numRecords": f.rows}),
            )
            for f in files
        ]
        changes: list[AddAction | RemoveAction] = [
            *actions
        ]  # a write transaction may also remove files
        options = CommitProperties(custom_metadata=info, max_commit_retries=0)
        partition_by = list(schema.partition_by) or None
        delta_schema = DeltaSchema.from_arrow(schema.arrow())

        def attempt(base: DeltaTable | None) -> None:
            if base is None:
                create_table_with_add_actions(
                    self.uri(schema.name),
                    delta_schema,
                    actions,
                    mode="error",
                    partition_by=partition_by,
                    configuration=TABLE_PROPERTIES,
                    storage_options=self.storage_options,
                    commit_properties=options,
                )
            else:
                base.create_write_transaction(
                    changes,
                    mode="append" if append else "overwrite",
                    schema=delta_schema,
                    partition_by=partition_by,
                    partition_filters=replace.partition_filters(schema)
                    if (replace and not append)
                    else None,
                    commit_properties=options,
                )

        self._commit(schema, attempt, replace, inputs, append, read_version)
        return self._version_written(schema.name, info[WRITE_ID_KEY])

    def refuse_stale(
        self, schema: TableSchema, replace: DateRange | None, inputs: dict[str, int]
    ) -> None:
        """Raise StaleInputError now if a replacement computed from `inputs` would be refused at its commit:
        for work that a refusal would waste or leave behind."""
        if self.version(schema.name) is not None:
            _refuse_stale(self.uri(schema.name), self.table(schema.name), replace or ALL, inputs)

    def _commit(
        self,
        schema: TableSchema,
        attempt: Callable[[DeltaTable | None], None],
        replace: DateRange | None,
        inputs: dict[str, int] | None,
        append: bool,
        read_version: int | None,
    ) -> None:
        """Make `attempt(base)` commit on top of `base`, the table's version that was checked (None: no table yet)."""
        if read_version is None:
            read_version = (inputs or {}).get(
                schema.name
            )  # computed from the table itself: a read-modify-write
        if schema.name not in self._properties_set and self.version(schema.name) is not None:
            set_table_properties(self.table(schema.name))
        self._properties_set.add(schema.name)
        commit_with_checks(
            self.uri(schema.name),
            self.storage_options,
            attempt,
            None if append else replace or ALL,
            inputs,
            read_version,
        )

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
            return (
                spark.read.format("delta")
                .option("versionAsOf", log.version())
                .load(self.uri(table))
            )
        schema = StructType.fromJson(json.loads(log.schema().to_json()))
        if not folders:
            return spark.createDataFrame([], schema)
        # One read per folder: Spark takes the partition values from the directories under basePath,
        # and refuses files whose directories hang from different folders in one read.
        reads = [
            spark.read.schema(schema)
            .option("basePath", f"{self.uri(table)}/{folder}".rstrip("/"))
            .parquet(*files)
            for folder, files in folders.items()
        ]
        return functools.reduce(lambda a, b: a.unionByName(b), reads).select(*schema.fieldNames())

    def write_spark(
        self,
        schema: TableSchema,
        df,
        replace: DateRange | None = None,
        inputs: dict[str, int] | None = None,
        append: bool = False,
        properties: dict[str, str] | None = None,
    ) -> int:
        """Commit a Spark DataFrame, with the same modes and recording rules as `write_arrow`.

        Spark's executors write the Parquet files, in parallel, into a folder of their own under the
        table's; delta-rs then commits them (`commit_files`). Nothing is visible until that commit, and
        files of a write that failed before it are unreferenced, for vacuum to delete.
        """
        from pyspark.sql import functions as F

        df = df.select(
            [F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.spark().fields]
        )
        folder = f"spark-{uuid.uuid4().hex}"
        df.write.mode("errorifexists").partitionBy(*schema.partition_by).parquet(
            f"{self.uri(schema.name)}/{folder}"
        )
        return self.commit_files(
            schema,
            _files_written(df.sparkSession, self.uri(schema.name), folder),
            replace,
            inputs,
            append,
            properties,
        )


def _files_by_folder(log: DeltaTable, root: str) -> dict[str, list[str]] | None:
    """The data files of `log`'s version, as URIs under the table's `root`, by the folder their
    partition directories hang from (the root, or a Spark write's folder); None if Spark cannot read
    them as Parquet with the partition values the log records."""
    if log.protocol().min_reader_version > 1:
        return None
    columns = log.metadata().partition_columns
    adds = (
        pa.table(log.get_add_actions(flatten=True))
        .select(["path", *(f"partition.{c}" for c in columns)])
        .to_pylist()
    )
    folders: dict[str, list[str]] = {}
    for add in adds:
        path = unquote(add["path"])
        if "://" in path or path.startswith("/") or any(ch in path for ch in "*?[]{}\\"):
            return None  # absolute (a shallow clone's), or a glob Spark would expand
        *dirs, _ = path.split("/")
        folder, named = dirs[: len(dirs) - len(columns)], dirs[len(dirs) - len(columns) :]
        spelled = [
            f"{c}={_HIVE_NULL if add[f'partition.{c}'] is None else add[f'partition.{c}']}"
            for c in columns
        ]
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
        fs = (
            fs.getRaw()
        )  # which lists the checksum files Hadoop writes beside local ones, to delete them
    prefix = fs.makeQualified(root).toString().rstrip("/") + "/"
    files = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        relative = status.getPath().toString().removeprefix(prefix)
        if relative.endswith(".crc"):
            fs.delete(status.getPath(), False)  # hidden: vacuum would never delete it
            continue
        if not relative.endswith(".parquet") or any(
            part.startswith(("_", ".")) for part in relative.split("/")
        ):
            continue
        reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(
            jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromStatus(status, conf)
        )
        try:
            rows = reader.getRecordCount()
        finally:
            reader.close()
        partition_values = {}
        for part in relative.split("/")[:-1]:
            key, value = part.split("=", 1)
            value = unquote(value)
            partition_values[key] = None if value == _HIVE_NULL else value
        files.append(
            DataFile(
                f"{folder}/{relative}",
                status.getLen(),
                rows,
                status.getModificationTime(),
                partition_values,
            )
        )
    return files


class WholeTable:
    """A commit's scope when it replaced the whole table (a full overwrite)."""

    def __repr__(self) -> str:
        return "ALL"


ALL = WholeTable()
Scope = (
    DateRange | WholeTable | None
)  # what a commit replaces: a date range, ALL, or nothing (an append)


def commit_metadata(
    inputs: dict[str, int] | None, properties: dict[str, str] | None, scope: Scope
) -> dict[str, str]:
    recorded = (
        {}
        if scope is None
        else {
            RANGE_KEY: scope.recorded()
            if isinstance(scope, DateRange)
            else json.dumps({"all": True})
        }
    )
    return (
        (properties or {})
        | recorded
        | {
            WRITE_ID_KEY: uuid.uuid4().hex,
            INPUTS_KEY: json.dumps(dict(sorted((inputs or {}).items()))),
        }
    )


def recorded_scope(info: dict) -> Scope:
    """What a commit replaced, as it recorded it; None for an append, or a commit made before ranges were recorded."""
    recorded = json.loads(info.get(RANGE_KEY) or "null")
    if recorded is None:
        return None
    if recorded.get("all"):
        return ALL
    return DateRange(
        recorded["column"],
        date.fromisoformat(recorded["start"]),
        date.fromisoformat(recorded["end"]),
    )


def commit_history(table: DeltaTable, limit: int | None = None) -> list[dict]:
    """What each commit recorded, newest first, of a table loaded at its latest version (delta-rs numbers
    the history of a table loaded at an older version wrongly; `DeltaStore.history` reads those).
    Commits delta-spark made (before Spark's writes were committed by delta-rs) hold the keys as a JSON string."""
    return [
        entry | json.loads(entry.get("userMetadata") or "{}")
        for entry in table.history(limit=limit)
    ]


def stale_inputs(base: DeltaTable, scope: Scope, inputs: dict[str, int]) -> list[str]:
    """Why a replacement of `scope` computed from `inputs` would be older than the rows it replaces: for
    each part of the scope, the newest commit that replaced it, if it recorded a newer version of an input."""
    if not inputs or scope is None:
        return []
    open_days = set(scope.days()) if isinstance(scope, DateRange) else None
    found: list[str] = []
    for limit in (32, None):
        found.clear()
        remaining = None if open_days is None else set(open_days)
        history = commit_history(base, limit)
        for info in history:
            recorded = recorded_scope(info)
            if recorded is None:
                continue
            if (
                remaining is None
                or not isinstance(recorded, DateRange)
                or not isinstance(scope, DateRange)
            ):
                covered = (
                    "the table" if remaining is None else f"{min(remaining)}..{max(remaining)}"
                )
                remaining = set()
            else:
                days = (
                    remaining & set(recorded.days()) if recorded.column == scope.column else set()
                )
                if not days:
                    continue
                remaining -= days
                covered = f"{min(days)}..{max(days)}"
            theirs = json.loads(info.get(INPUTS_KEY) or "{}")
            found += [
                f"{covered} holds rows computed from {name} v{theirs[name]} "
                f"(commit v{info['version']}), newer than v{version}"
                for name, version in sorted(inputs.items())
                if theirs.get(name) is not None and theirs[name] > version
            ]
            if not remaining:
                return found
        if limit is None or len(history) < limit:
            return found
    return found


def _refuse_stale(uri: str, base: DeltaTable, scope: Scope, inputs: dict[str, int]) -> None:
    if stale := stale_inputs(base, scope, inputs):
        raise StaleInputError(
            f"{uri.rsplit('/', 1)[-1]}: not committed, a newer computation is already there: {'; '.join(stale)}"
        )


def _files(table: DeltaTable, column: str | None) -> dict[str, str | None]:
    """Each data file of the table's version, with its value of partition `column` as text."""
    adds = pa.table(table.get_add_actions(flatten=True))
    values = (
        adds.column(f"partition.{column}").to_pylist()
        if column and f"partition.{column}" in adds.column_names
        else [None] * adds.num_rows
    )
    return {
        path: None if value is None else str(value)[:10]
        for path, value in zip(adds.column("path").to_pylist(), values)
    }


def moved_partitions(then: DeltaTable, now: DeltaTable, scope: Scope) -> list[str]:
    """The partitions of `scope` whose files differ between two versions of a table (all of them for ALL)."""
    column = scope.column if isinstance(scope, DateRange) else None
    before, after = _files(then, column), _files(now, column)
    changed = {before.get(path, after.get(path)) for path in before.keys() ^ after.keys()}
    if not isinstance(scope, DateRange):
        return sorted(map(str, changed)) if changed else []
    days = {d.isoformat() for d in scope.days()}
    return sorted(str(value) for value in changed if value in days)


def set_table_properties(table: DeltaTable) -> None:
    """Give a table written before TABLE_PROPERTIES existed those properties (one commit, once)."""
    missing = {
        k: v for k, v in TABLE_PROPERTIES.items() if table.metadata().configuration.get(k) != v
    }
    if missing:
        with_commit_retries(lambda: table.alter.set_table_properties(missing))


def commit_with_checks(
    uri: str,
    storage_options: dict[str, str] | None,
    attempt: Callable[[DeltaTable | None], None],
    scope: Scope,
    inputs: dict[str, int] | None,
    read_version: int | None = None,
) -> None:
    """Run `attempt(base)`, which commits on top of exactly `base` (None: creates the table), where
    `base` is the table's latest version and passed the checks; a race lost to another writer's
    commit is checked and attempted again on the new version.

    Checks: `stale_inputs` (StaleInputError), and with `read_version` (the version of this table the
    data was computed from) no change to `scope` since then (TableMovedError).
    """

    def latest() -> DeltaTable | None:
        try:
            return DeltaTable(uri, storage_options=storage_options)
        except TableNotFoundError:
            return None

    for attempt_number in range(1, RACE_ATTEMPTS + 1):
        base = latest()
        if base is not None:
            _refuse_stale(uri, base, scope, inputs or {})
            if read_version is not None and read_version != base.version():
                then = DeltaTable(uri, version=read_version, storage_options=storage_options)
                if moved := moved_partitions(then, base, scope):
                    raise TableMovedError(
                        f"{uri.rsplit('/', 1)[-1]}: not committed, {', '.join(moved)} changed "
                        f"after v{read_version}, which the data was computed from"
                    )
        elif read_version is not None:
            raise TableMovedError(
                f"{uri.rsplit('/', 1)[-1]}: not committed, the table read at v{read_version} is gone"
            )
        try:
            attempt(base)
            return
        except DeltaError as exc:
            # Lost: another commit took the next version, or another writer created the table first.
            lost = isinstance(exc, CommitFailedError) or (base is None and latest() is not None)
            if not lost or attempt_number == RACE_ATTEMPTS:
                raise
        time.sleep(random.uniform(0.02, 0.1) * min(2**attempt_number, 32))
