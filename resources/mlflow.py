"""MLflow tracking as a Dagster resource: where runs are recorded and their artifacts kept."""

from dagster import ConfigurableResource

from lakehouse.ml.lineage import EXPERIMENT


class MlflowTracking(ConfigurableResource):
    tracking_uri: str
    artifact_root: str
    experiment: str = EXPERIMENT

    def activate(self) -> str:
        """Point the mlflow client at this store; returns the experiment id (created on first use)."""
        import mlflow  # here: every Dagster process loads the resources, few runs track

        mlflow.set_tracking_uri(self.tracking_uri)
        existing = mlflow.get_experiment_by_name(self.experiment)
        experiment_id = existing.experiment_id if existing else mlflow.create_experiment(self.experiment, artifact_location=self.artifact_root)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
