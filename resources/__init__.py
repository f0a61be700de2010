"""Resources by profile, chosen in one place by LAKEHOUSE_PROFILE.

local (default): Delta tables under LAKEHOUSE_DATA_DIR, the transformations on DuckDB in process
(LAKEHOUSE_ENGINE=spark: on Spark local[2]), dbt-duckdb, Feast with a SQLite online store, MLflow
with a SQLite tracking store.
"""

from __future__ import annotations

import os

from dagster import EnvVar

from lakehouse.config import lakehouse_paths
from resources.dbt import dbt_cli
from resources.engine import EngineResource
from resources.delta import DeltaStorage
from resources.feast import FeastResource
from resources.landing import LandingArea
from resources.mlflow import MlflowTracking


def _resources_local() -> dict:
    paths = lakehouse_paths()
    return {
        "delta": DeltaStorage(root=paths.delta_root),
        "landing": LandingArea(path=str(paths.landing)),
        "engine": EngineResource(kind=os.environ.get("LAKEHOUSE_ENGINE", "duckdb"), spark_master=os.environ.get("LAKEHOUSE_SPARK_MASTER", "local[2]")),
        "dbt": dbt_cli(),
        "feast": FeastResource(data_dir=str(paths.data_dir)),
        "mlflow_tracking": MlflowTracking(tracking_uri=_tracking_uri(paths), artifact_root=paths.mlflow_artifacts.as_uri()),
    }


def _tracking_uri(paths):
    # A tracking URI set in the environment may carry a password: the resource then names the variable,
    # which is what Dagster's UI shows, and reads its value only when a run starts.
    return EnvVar("MLFLOW_TRACKING_URI") if os.environ.get("MLFLOW_TRACKING_URI") else paths.mlflow_tracking_uri


# The cluster profile (S3-API Delta root, Spark master, Redis, MLflow server, Postgres) comes next.
PROFILES = {"local": _resources_local}


def resources_for(profile: str | None = None) -> dict:
    profile = profile or os.environ.get("LAKEHOUSE_PROFILE", "local")
    if profile not in PROFILES:
        raise ValueError(f"LAKEHOUSE_PROFILE={profile!r}: expected one of {sorted(PROFILES)}")
    return PROFILES[profile]()
