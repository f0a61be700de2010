"""Feast as a Dagster resource: the feature repo bound to this profile's data directory."""

from pathlib import Path

from dagster import ConfigurableResource

from lakehouse.features.feature_store import open_store


class FeastResource(ConfigurableResource):
    data_dir: str

    def store(self):
        return open_store(Path(self.data_dir))
