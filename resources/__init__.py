"""Resources by profile, chosen in one place by LAKEHOUSE_PROFILE.

local (default): Delta tables under LAKEHOUSE_DATA_DIR, the transformations on DuckDB in process
(LAKEHOUSE_ENGINE=spark: on Spark local[2]), dbt-duckdb, Feast with a SQLite online store, MLflow
with a SQLite tracking store, the Dagster instance on SQLite.

cluster: Delta tables on an S3-API object store (LAKEHOUSE_DELTA_ROOT=s3://…, AWS_* for delta-rs, Spark
and dbt alike), the transformations on a Spark standalone cluster (LAKEHOUSE_SPARK_MASTER), dbt-duckdb
reading and writing those tables, Feast with Redis and a SQL registry on PostgreSQL, an MLflow server
(MLFLOW_TRACKING_URI), and the Dagster instance on PostgreSQL (`resources/instance.py`).
`scripts/cluster.py env` prints every variable for the servers it starts.
"""

from __future__ import annotations

import os

from dagster import EnvVar

from lakehouse.config import lakehouse_paths, public_uri
from resources.dbt import dbt_cli
from resources.delta import DeltaStorage
from resources.engine import EngineResource
from resources.feast import FeastResource
from resources.landing import LandingArea
from resources.mlflow import MlflowTracking

# What the cluster profile cannot run without; credentials (AWS_SECRET_ACCESS_KEY, ...) are read by
# the clients themselves when they connect, or are EnvVars below.
CLUSTER_SETTINGS = (
    "LAKEHOUSE_DELTA_ROOT",
    "LAKEHOUSE_SPARK_MASTER",
    "MLFLOW_TRACKING_URI",
    "LAKEHOUSE_REDIS",
    "LAKEHOUSE_PG_URL",
)


def _resources_shared(paths) -> dict:
    """The resources both profiles build alike: where the Delta root and Feast's stores point is read
    from the environment (`lakehouse_paths`, `render_config`)."""
    return {
        "delta": DeltaStorage(root=paths.delta_root),
        "landing": LandingArea(path=str(paths.landing)),
        "dbt": dbt_cli(),
        "feast": FeastResource(data_dir=str(paths.data_dir)),
    }


def _resources_local() -> dict:
    paths = lakehouse_paths()
    return _resources_shared(paths) | {
        "engine": EngineResource(
            kind=os.environ.get("LAKEHOUSE_ENGINE", "duckdb"),
            spark_master=os.environ.get("LAKEHOUSE_SPARK_MASTER", "local[2]"),
        ),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=_tracking_uri(paths), artifact_root=paths.mlflow_artifacts.as_uri()
        ),
    }


def _resources_cluster() -> dict:
    missing = [name for name in CLUSTER_SETTINGS if not os.environ.get(name)]
    if missing:
        raise ValueError(
            f"LAKEHOUSE_PROFILE=cluster needs {', '.join(missing)} (for the servers of "
            '`make cluster-up`: eval "$(.venv/bin/python scripts/cluster.py env)")'
        )
    return _resources_shared(lakehouse_paths()) | {
        "engine": EngineResource(kind="spark", spark_master=os.environ["LAKEHOUSE_SPARK_MASTER"]),
        # The server keeps the artifacts where it was told to (--artifacts-destination), and is the UI too.
        "mlflow_tracking": MlflowTracking(
            tracking_uri=EnvVar("MLFLOW_TRACKING_URI"),
            ui_url=public_uri(os.environ["MLFLOW_TRACKING_URI"]),
        ),
    }


def _tracking_uri(paths):
    # A tracking URI set in the environment may carry a password: the resource then names the variable,
    # which is what Dagster's UI shows, and reads its value only when a run starts.
    return (
        EnvVar("MLFLOW_TRACKING_URI")
        if os.environ.get("MLFLOW_TRACKING_URI")
        else paths.mlflow_tracking_uri
    )


PROFILES = {"local": _resources_local, "cluster": _resources_cluster}


def profile_name(environ=os.environ) -> str:
    profile = environ.get("LAKEHOUSE_PROFILE") or "local"
    if profile not in PROFILES:
        raise ValueError(f"LAKEHOUSE_PROFILE={profile!r}: expected one of {sorted(PROFILES)}")
    return profile


def resources_for(profile: str | None = None) -> dict:
    return PROFILES[profile_name({"LAKEHOUSE_PROFILE": profile} if profile else os.environ)]()
