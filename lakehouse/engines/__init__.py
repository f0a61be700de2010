"""Engines that run the PySpark-API transformations, and commit and validate what they produce.

- `duckdb`: DuckDB in process, through SQLFrame (the local profile's default; no JVM).
- `spark`: Spark with delta-spark (the cluster profile; locally with LAKEHOUSE_ENGINE=spark).

Both offer the same few operations: `read` a Delta table (optionally as of a version) as a
DataFrame, `from_arrow` for small inputs, `persisting()` to compute a DataFrame once for several
readers, and `batch(df)` to turn a result into a `Batch` (engines/batch.py) that is validated with
pandera, committed to Delta and previewed. Which one a process uses is a setting of the profile
(resources/).
"""

from __future__ import annotations

ENGINES = ("duckdb", "spark")


def engine_named(
    name: str, spark_master: str | None = None, spark_conf: dict[str, str] | None = None
):
    if name == "duckdb":
        from lakehouse.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        from lakehouse.engines.spark import SparkEngine

        return SparkEngine(spark_master, spark_conf)
    raise ValueError(f"unknown engine {name!r}: expected one of {', '.join(ENGINES)}")
