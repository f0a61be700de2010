"""Spark as a Dagster resource: the master URL and extra settings; one session per process."""

from __future__ import annotations

from dagster import ConfigurableResource

from lakehouse.spark import get_spark


class SparkResource(ConfigurableResource):
    master: str = "local[2]"
    conf: dict[str, str] = {}

    def session(self):
        return get_spark(self.master, self.conf)
