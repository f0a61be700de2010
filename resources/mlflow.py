"""MLflow tracking as a Dagster resource: where runs are recorded, their artifacts kept, and the UI that shows them."""

import os
from pathlib import Path
from urllib.parse import quote

from dagster import ConfigurableResource, InitResourceContext

from lakehouse.ml.lineage import EXPERIMENT

# SQLAlchemy stores MLflow supports (mlflow.store.db.db_types), named here: importing mlflow costs seconds.
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class MlflowTracking(ConfigurableResource):
    tracking_uri: str
    # None: where the tracking server puts them (its --artifacts-destination); set for a database or file store.
    artifact_root: str | None = None
    experiment: str = EXPERIMENT
    # Where `mlflow ui --backend-store-uri <tracking_uri>` serves by default; only used to build links.
    ui_url: str = "http://127.0.0.1:5000"

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self.ensure_store()

    def ensure_store(self) -> None:
        """Create the tracking store, if it does not exist yet, with its default artifact root at `artifact_root`.

        MLflow creates the Default experiment (id 0) with the store, its artifact location fixed at
        the creating client's default artifact root, which for a database store is `./mlruns` under
        whatever directory that process runs in. Creating the store here first puts experiment 0 at
        `<artifact_root>/0` instead; the experiments this project creates name their own location
        (`activate`). A tracking server has its own `--default-artifact-root` and is left alone.
        """
        scheme = self.tracking_uri.split(":", 1)[0].split("+", 1)[0]
        if scheme not in _DATABASE_SCHEMES:
            return
        if scheme == "sqlite":
            database = self.tracking_uri.split(":", 1)[1].removeprefix("///").split("?", 1)[0]
            if not database or database == ":memory:" or Path(database).exists():
                return  # in memory, or created already (experiment 0 is written once, with the store)
        from mlflow.store.tracking.sqlalchemy_store import (
            SqlAlchemyStore,
        )  # here: only a missing store needs mlflow

        SqlAlchemyStore(
            self.tracking_uri, self.artifact_root
        )  # creates the tables and experiment 0

    def activate(self) -> str:
        """Point the mlflow client at this store; returns the experiment id (created on first use)."""
        import mlflow  # here: every Dagster process loads the resources, few runs track

        self.ensure_store()
        # MLflow prints each run's link on stdout, built from the tracking URI with its user info, and a
        # run's stdout is kept in Dagster's compute logs. The run's link is in the metadata instead (`run_url`).
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
        mlflow.set_tracking_uri(self.tracking_uri)
        existing = mlflow.get_experiment_by_name(self.experiment)
        experiment_id = (
            existing.experiment_id
            if existing
            else mlflow.create_experiment(self.experiment, artifact_location=self.artifact_root)
        )
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def run_url(self, experiment_id: str, run_id: str, artifact_path: str | None = None) -> str:
        """The run's page in the MLflow UI at `ui_url`, or one of its artifacts there."""
        url = f"{self.ui_url.rstrip('/')}/#/experiments/{quote(experiment_id)}/runs/{quote(run_id)}"
        return f"{url}/artifacts/{quote(artifact_path)}" if artifact_path else url
