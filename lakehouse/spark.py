"""The one SparkSession of a process, configured for Delta and for a small machine."""

from __future__ import annotations

import os
import threading

# Delta's SQL extension and catalog; the jars themselves sit in pyspark/jars (scripts/fetch_jars.py).
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
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


def get_spark(master: str | None = None, conf: dict[str, str] | None = None):
    """Return the process's SparkSession, starting it on first use (about 7 s on 2 cores)."""
    from pyspark.sql import SparkSession

    with _lock:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = SparkSession.builder.master(master or os.environ.get("LAKEHOUSE_SPARK_MASTER", "local[2]"))
        builder = builder.appName("lakehouse")
        for key, value in {**LOCAL_CONF, **DELTA_CONF, **(conf or {})}.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        return session
