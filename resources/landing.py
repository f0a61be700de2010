"""The landing area: the folder events arrive in, one sub-folder per day."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


class LandingArea(ConfigurableResource):
    path: str

    @property
    def root(self) -> Path:
        return Path(self.path)
