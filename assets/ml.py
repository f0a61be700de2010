"""ML layer: the purchase-propensity model trained on a Feast training set and logged to MLflow.

Its labels, training_labels, are computed with the feature tables (assets/features.py): one version of
cleaned_events for features and labels alike."""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.automation import rebuilt_with_its_inputs
from lakehouse.ml.lineage import REGISTERED_MODEL, dagster_tags
from resources.delta import DeltaStorage
from resources.feast import FeastResource
from resources.mlflow import MlflowTracking


@asset(
    backfill_policy=BackfillPolicy.single_run(),
    deps=["training_labels", "feast_registry", "user_features", "category_features"],
    group_name="ml",
    kinds={"mlflow", "sklearn"},
    automation_condition=rebuilt_with_its_inputs,
    check_specs=[
        AssetCheckSpec(
            "training_set_point_in_time",
            asset="purchase_propensity_model",
            blocking=True,
            description=(
                "No training row got a feature row from after its prediction time or older than the "
                "feature view's TTL; otherwise nothing is trained or logged."
            ),
        )
    ],
)
def purchase_propensity_model(
    context: AssetExecutionContext,
    delta: DeltaStorage,
    feast: FeastResource,
    mlflow_tracking: MlflowTracking,
):
    """A gradient-boosted classifier of "purchases within 7 days", with the exact data that trained it.

    The training set is training_labels joined point-in-time to the purchase_propensity_v2 feature
    service through Feast, every input pinned to its current Delta version. It trains on the earlier
    prediction times and is evaluated on the later ones (AUC, precision/recall, calibration; ROC,
    PR, calibration and feature-importance plots). The MLflow run records each input table's URI,
    version and rows, the training set's SHA-256 and a snapshot of it, the feature service and its
    features, the git commit and this Dagster run, the estimator's hyperparameters and the split as
    params, and a description (what it predicts, the training window, the feature service, how to
    reproduce); the model is registered as a new version of `purchase_propensity` carrying the same
    tags and description. `lakehouse reproduce RUN_ID` returns that training set later (`--rebuild`
    recomputes it from the pinned versions).

    Which version serves: the registry alias `champion`. A version is registered only once its
    training set passed the blocking point-in-time check, and it becomes `champion` as soon as it is
    registered, so the champion is always the newest version trained on leak-free data (the one the
    serving-skew check, `serving_features_match_training`, compares with the online features). A
    skew failure does not move the alias: an older version learnt from even older data, so the
    answer to skew is a new training run, which takes the alias when it passes.
    """
    # pandas, scikit-learn, matplotlib and MLflow load here, not with the module: every Dagster
    # process imports the assets, and only this one trains.
    from lakehouse.ml.evaluation import evaluation_figures
    from lakehouse.ml.leakage import LeakageError
    from lakehouse.ml.tracking import CHAMPION, log_training_run, promote
    from lakehouse.ml.training import train_purchase_model
    from lakehouse.ml.training_set import build_training_set, current_inputs, lineage_of

    feast_store = feast.store()
    inputs = current_inputs(delta.store(), feast_store)
    built = build_training_set(feast_store, inputs)
    yield AssetCheckResult(
        check_name="training_set_point_in_time",
        passed=not built.leakage,
        metadata={"violations": MetadataValue.json(built.leakage)},
    )
    if built.leakage:
        raise LeakageError(f"training set leaks: {built.leakage}; nothing trained")
    training_set = built.frame
    lineage = lineage_of(feast_store, training_set, inputs)
    trained = train_purchase_model(training_set, list(training_set.columns[3:]))
    experiment_id = mlflow_tracking.activate()
    logged = log_training_run(
        run_name=f"purchase_propensity_{context.run.run_id[:8]}",
        trained=trained,
        training_set=training_set,
        lineage=lineage,
        extra_tags=dagster_tags(context.run.run_id, _partition(context)),
        figures=evaluation_figures(trained.test_labels, trained.test_scores, trained.importance),
    )
    promote(logged.model_version)  # registered, so it passed the point-in-time check: it serves now
    context.log.info(
        f"MLflow run {logged.run_id}, model {REGISTERED_MODEL} v{logged.model_version} ({CHAMPION}): "
        f"test AUC {trained.metrics['test_auc']:.3f}"
    )
    yield MaterializeResult(
        metadata={
            "mlflow_run_id": logged.run_id,
            "mlflow_run": MetadataValue.url(mlflow_tracking.run_url(experiment_id, logged.run_id)),
            "registered_model": f"{REGISTERED_MODEL} v{logged.model_version}",
            "alias": f"{CHAMPION} -> v{logged.model_version}",
            "training_set_sha256": lineage.training_set_sha256,
            "training_set_rows": MetadataValue.int(lineage.training_set_rows),
            "input_versions": MetadataValue.json({t.name: t.version for t in inputs}),
            **{k: MetadataValue.float(v) for k, v in trained.metrics.items()},
        }
    )


def _partition(context: AssetExecutionContext) -> str | None:
    """The run's partition or partition range: the model is unpartitioned, but runs with the daily assets."""
    tags = context.run.tags
    start, end = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    return tags.get("dagster/partition") or (f"{start}...{end}" if start else None)
