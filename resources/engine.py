"""The engine of the PySpark-API transformations as a Dagster resource: DuckDB in process, or Spark."""

from __future__ import annotations

from dagster import ConfigurableResource

from lakehouse.engines import engine_named


class EngineResource(ConfigurableResource):
    """`duckdb` runs the transformations in process through SQLFrame; `spark` on a Spark session
    (`spark_master`: local[2], or a cluster's URL). One session per process either way."""

    kind: str = "duckdb"
    spark_master: str = "local[2]"
    spark_conf: dict[str, str] = {}

    def engine(self):
        return engine_named(self.kind, self.spark_master, self.spark_conf)
