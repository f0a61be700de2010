"""Spark with delta-spark: the engine of the cluster profile, and of the local one on request.

One SparkSession per process, configured for Delta and for a small machine. Tables are read and
written as Parquet files that delta-rs lists and commits (tables/storage.py); batches are validated
against their pandera schemas on the cluster (tables/validation.py), so no large frame is pulled to
the driver.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping

import pyarrow as pa

from lakehouse.tables.schemas import TableSchema
from lakehouse.tables.storage import DateRange, DeltaStore
from lakehouse.tables.validation import ValidationReport, validate_spark

# Every session: Delta's SQL extension and catalog (jars in pyspark/jars, from scripts/fetch_jars.py).
SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Cleaning judges repeated JSON keys itself, the same way on every engine (engines/api.py).
    "spark.sql.variant.allowDuplicateKeys": "true",
    # Spark writes only data files (delta-rs commits them, tables/storage.py): each task moves its files
    # into place when it commits (one rename, not two), and no _SUCCESS marker is left beside them.
    "spark.hadoop.mapreduce.fileoutputcommitter.algorithm.version": "2",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    # A cached frame's per-batch min/max ignore NaN (Java's comparisons are false for it), so a filter
    # such as `price >= inf` skipped the batches holding NaN: pandera's "below infinity" check passed them.
    "spark.sql.inMemoryColumnarStorage.partitionPruning": "false",
}

# Tuned for 2 cores: few shuffle partitions, small Delta log snapshots, no UI, UTC everywhere,
# and the driver on loopback instead of the machine's external address.
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

_lock = threading.Lock()


def object_store_conf(environ: Mapping[str, str]) -> dict[str, str]:
    """S3A settings from the same environment delta-rs reads (AWS_ENDPOINT_URL, AWS_REGION, ...), but its keys.

    `s3://` is served by S3A too, so Spark and delta-rs name a table by one URI. An S3-API store that is
    not AWS (AWS_ENDPOINT_URL set) gets path-style addressing, and plain http when its URL says so.
    """
    conf = {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    if region := environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"):
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    if endpoint := environ.get("AWS_ENDPOINT_URL"):
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(
                endpoint.startswith("https://")
            ).lower(),
        }
    return conf


def object_store_keys(environ: Mapping[str, str]) -> dict[str, str]:
    """The S3A key pair, set on the running session's Hadoop configuration (`get_spark`), never on the
    builder: pyspark passes every builder setting to spark-submit as `--conf k=v`, on a command line
    that every local user can read. Spark hands the Hadoop configuration to its tasks with each job, so
    executors on other machines read with the same keys; Spark redacts them wherever it shows it
    (its default `spark.redaction.regex`)."""
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return {
            "fs.s3a.access.key": environ["AWS_ACCESS_KEY_ID"],
            "fs.s3a.secret.key": environ["AWS_SECRET_ACCESS_KEY"],
        }
    return {}


def get_spark(master: str | None = None, conf: dict[str, str] | None = None):
    """Return the process's SparkSession, starting it on first use (about 7 s on 2 cores)."""
    from pyspark.sql import SparkSession

    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python UDFs run on the executors in this interpreter (its packages), not in whatever python3 is on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder.master(
            master or os.environ.get("LAKEHOUSE_SPARK_MASTER", "local[2]")
        )
        builder = builder.appName("lakehouse")
        for key, value in {
            **LOCAL_CONF,
            **SESSION_CONF,
            **object_store_conf(os.environ),
            **(conf or {}),
        }.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        hadoop = session.sparkContext._jsc.hadoopConfiguration()  # noqa: SLF001 (pyspark has no public handle on it)
        for key, value in object_store_keys(os.environ).items():
            hadoop.set(key, value)
        return session


class SparkBatch:
    """A Spark DataFrame about to be committed: cached, so validation, count and write compute it once."""

    def __init__(self, df):
        self.df = df.cache()
        self._rows: int | None = None

    @property
    def rows(self) -> int:
        if self._rows is None:
            self._rows = self.df.count()
        return self._rows

    def validate(self, schema: TableSchema) -> ValidationReport:
        report = validate_spark(schema, self.df)
        self._rows = report.rows
        return report

    def commit(
        self,
        store: DeltaStore,
        schema: TableSchema,
        replace: DateRange | None = None,
        inputs: dict[str, int] | None = None,
        append: bool = False,
        properties: dict[str, str] | None = None,
    ) -> int:
        return store.write_spark(schema, self.df, replace, inputs, append, properties)

    def preview(self, rows: int = 10) -> pa.Table:
        return self.df.limit(rows).toArrow()

    def release(self) -> None:
        self.df.unpersist()


class SparkEngine:
    name = "spark"

    def __init__(self, master: str | None = None, conf: dict[str, str] | None = None):
        self.master, self.conf = master, conf or {}

    @property
    def session(self):
        return get_spark(self.master, self.conf)

    def read(self, store: DeltaStore, table: str, version: int | None = None):
        return store.read_spark(self.session, table, version)

    def from_arrow(self, table: pa.Table, schema: TableSchema | None = None):
        spark_schema = schema.spark() if schema is not None else None
        return (
            self.session.createDataFrame(table.to_pylist(), spark_schema)
            if spark_schema
            else self.session.createDataFrame(table.to_pandas())
        )

    @contextlib.contextmanager
    def persisting(self) -> Iterator:
        cached = []

        def persist(df):
            cached.append(df.cache())
            return cached[-1]

        try:
            yield persist
        finally:
            for df in cached:
                df.unpersist()

    def batch(self, df) -> SparkBatch:
        return SparkBatch(df)

    def to_arrow(self, df) -> pa.Table:
        return df.toArrow()
