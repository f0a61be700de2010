"""One training run in MLflow: lineage, metrics, plots, the training-set snapshot, the registered model.

The snapshot (the canonical training set as parquet, an artifact of the run) is what `lakehouse
reproduce` returns by default; the lineage tags are what `--rebuild` recomputes it from. The model
is registered under REGISTERED_MODEL, and its version carries the run's lineage tags, so whoever
finds the model in the registry also finds the data that trained it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from lakehouse.ml.lineage import REGISTERED_MODEL, SNAPSHOT_ARTIFACT, TrainingLineage, log_lineage
from lakehouse.ml.training import TrainedModel

# HistGradientBoostingClassifier's tree nodes, which skops must be told to load.
_SKOPS_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# What loading the model needs, at the versions uv.lock pins (MLflow would otherwise infer them, slowly).
_MODEL_REQUIREMENTS = [f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "scipy", "pandas", "skops")]


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_version: str


def log_training_run(
    run_name: str,
    trained: TrainedModel,
    training_set: pd.DataFrame,
    lineage: TrainingLineage,
    extra_tags: dict[str, str],
    figures: dict | None = None,
) -> LoggedRun:
    """Record a trained model and everything needed to rebuild its training set; returns its ids.

    Call after `mlflow.set_tracking_uri` / `set_experiment` (the MlflowTracking resource does both).
    """
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        tags = log_lineage(lineage, extra_tags)
        mlflow.log_params({"model": type(trained.model).__name__, "split_time": trained.split_time.isoformat(), "features": ",".join(trained.feature_names)})
        mlflow.log_metrics(trained.metrics)
        snapshot = Path(tmp) / Path(SNAPSHOT_ARTIFACT).name
        training_set.to_parquet(snapshot, index=False)
        mlflow.log_artifact(str(snapshot), artifact_path=str(Path(SNAPSHOT_ARTIFACT).parent))
        for name, figure in (figures or {}).items():
            mlflow.log_figure(figure, f"evaluation/{name}")
        info = mlflow.sklearn.log_model(
            trained.model,
            name="model",
            input_example=training_set[trained.feature_names].head(5),
            registered_model_name=REGISTERED_MODEL,
            skops_trusted_types=_SKOPS_TRUSTED,
            pip_requirements=_MODEL_REQUIREMENTS,
        )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, version, key, value)
    return LoggedRun(run.info.run_id, version)
