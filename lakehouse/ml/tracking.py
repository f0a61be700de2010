"""One training run in MLflow: lineage, hyperparameters, metrics, plots, the training-set snapshot, the
registered model.

The snapshot (the canonical training set as parquet, an artifact of the run) is what `lakehouse
reproduce` returns by default; the lineage tags are what `--rebuild` recomputes it from. The model
is registered under REGISTERED_MODEL, and its version carries the run's lineage tags, so whoever
finds the model in the registry also finds the data that trained it. The run, the registered model
and each version carry a description (what the model predicts, its training window, its feature
service, how to reproduce it), which the MLflow UI shows first; the alias CHAMPION marks the
version that serves (`promote`).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from threadpoolctl import threadpool_limits

from lakehouse.ml.lineage import REGISTERED_MODEL, SNAPSHOT_ARTIFACT, TrainingLineage, log_lineage
from lakehouse.ml.training import TEST_SHARE, TrainedModel

# HistGradientBoostingClassifier's tree nodes, which skops must be told to load.
_SKOPS_TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# What loading the model needs, at the versions uv.lock pins (MLflow would otherwise infer them, slowly).
_MODEL_REQUIREMENTS = [
    f"{name}=={version(name)}" for name in ("scikit-learn", "numpy", "scipy", "pandas", "skops")
]
# The registry alias of the version that serves; see `promote`.
CHAMPION = "champion"
# MLflow shows this run tag as the run's description.
RUN_DESCRIPTION_TAG = "mlflow.note.content"
PREDICTS = "the probability that a user completes a purchase in the 7 days from the prediction time (UTC midnight)"


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    model_version: str


def training_params(trained: TrainedModel, training_set: pd.DataFrame) -> dict[str, str]:
    """The estimator's hyperparameters (get_params) and how the data was split: the run's MLflow params."""
    times = pd.to_datetime(training_set["event_timestamp"])
    return {k: str(v) for k, v in trained.model.get_params().items()} | {
        "model": type(trained.model).__name__,
        "split": "temporal",  # earlier prediction times train, later ones test; never a random split
        "test_share": str(TEST_SHARE),
        "window_start": times.min().isoformat(),  # first prediction time
        "split_time": trained.split_time.isoformat(),  # first test prediction time
        "window_end": times.max().isoformat(),  # last prediction time
        "features": ",".join(trained.feature_names),
    }


def run_description(
    run_id: str, trained: TrainedModel, training_set: pd.DataFrame, lineage: TrainingLineage
) -> str:
    """Markdown for the run and its model version: what it predicts, on which window and features, how to
    get its data back."""
    params = training_params(trained, training_set)
    auc = trained.metrics.get("test_auc", math.nan)
    inputs = ", ".join(f"`{t.name}@v{t.version}`" for t in lineage.inputs)
    return (
        f"Predicts {PREDICTS}: a {params['model']} trained by the Dagster asset "
        "`purchase_propensity_model`.\n\n"
        f"- **Training window**: prediction times {params['window_start']} to {params['window_end']}; "
        f"trained on those before {params['split_time']}, tested on the rest (temporal split, latest "
        f"{TEST_SHARE:.0%} of prediction times held out). Test AUC {auc:.3f}.\n"
        f"- **Features**: Feast feature service `{lineage.feature_service}` "
        f"({len(lineage.feature_refs)} features, project `{lineage.feast_project}`).\n"
        f"- **Inputs**: {inputs}; training set {lineage.training_set_rows:,} rows, "
        f"SHA-256 `{lineage.training_set_sha256}` (over its `{lineage.training_set_hash_form}` form).\n"
        f"- **Reproduce**: `lakehouse reproduce {run_id} --out training_set.parquet` returns this training "
        "set, hash-checked (`--rebuild` recomputes it from the recorded Delta tables at their versions); "
        f"`lakehouse lineage {run_id}` lists every table version behind it.\n"
    )


def registered_model_description(feature_service: str) -> str:
    return (
        f"Purchase propensity: {PREDICTS}, from the user's activity and their favourite category's activity "
        f"(Feast feature service `{feature_service}` in the newest version). Trained by the Dagster asset "
        f"`purchase_propensity_model` on the earlier prediction times and tested on the later ones.\n\n"
        f"Each version's description gives its training window and feature service; its tags "
        f"(`lakehouse.*`) the Delta version of every input table. The alias `{CHAMPION}` marks the "
        f"version that serves: the newest version, set when it is registered, which happens only after "
        f"its training set passed the point-in-time check.\n\n"
        f"To get a version's training set: `lakehouse reproduce RUN_ID --out training_set.parquet` with "
        f"the version's run id (`--rebuild` recomputes it from the pinned Delta versions)."
    )


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
        description = run_description(run.info.run_id, trained, training_set, lineage)
        mlflow.set_tag(RUN_DESCRIPTION_TAG, description)
        mlflow.log_params(training_params(trained, training_set))
        mlflow.log_metrics(trained.metrics)
        snapshot = Path(tmp) / Path(SNAPSHOT_ARTIFACT).name
        training_set.to_parquet(snapshot, index=False)
        mlflow.log_artifact(str(snapshot), artifact_path=str(Path(SNAPSHOT_ARTIFACT).parent))
        for name, figure in (figures or {}).items():
            mlflow.log_figure(figure, f"evaluation/{name}")
        with threadpool_limits(limits=1, user_api="openmp"):  # it predicts the input example
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
    client.update_model_version(REGISTERED_MODEL, version, description=description)
    client.update_registered_model(
        REGISTERED_MODEL, description=registered_model_description(lineage.feature_service)
    )
    return LoggedRun(run.info.run_id, version)


def promote(model_version: str) -> None:
    """Point the alias CHAMPION at `model_version` of REGISTERED_MODEL (moving it off the previous one)."""
    MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, model_version)
