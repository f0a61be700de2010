"""Feast: register the feature repo and keep the online store current."""

from urllib.parse import urlsplit
from urllib.request import url2pathname

import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.automation import rebuilt_with_its_inputs
from assets.publish import bounded
from lakehouse.config import public_uri
from lakehouse.features.feature_store import (
    FEATURE_REPO,
    apply_definitions,
    materialize_incremental,
    online_offline_mismatches,
)
from lakehouse.ml.drift import PSI_FAIL, PSI_WARN, worst_status
from resources.delta import DeltaStorage
from resources.feast import FeastResource
from resources.mlflow import MlflowTracking

FEATURE_TABLES = ("user_features", "category_features")  # what the online store is loaded from


@asset(
    backfill_policy=BackfillPolicy.single_run(),
    deps=["user_features", "category_features"],
    group_name="features",
    kinds={"feast"},
)
def feast_registry(feast: FeastResource):
    """The Feast registry: feature_repo/'s entities, views and services, as `feast apply` registers them.

    Applying validates that every source is a readable Delta table with its timestamp columns, and
    removes objects that were deleted from the repo.
    """
    views = apply_definitions(feast.store())
    return MaterializeResult(
        metadata={
            "feature_views": MetadataValue.json(views),
            "feature_repo": MetadataValue.path(str(FEATURE_REPO)),
        }
    )


@asset(
    backfill_policy=BackfillPolicy.single_run(),
    deps=["feast_registry", "user_features", "category_features"],
    group_name="features",
    kinds={"feast", "sqlite"},
    automation_condition=rebuilt_with_its_inputs,
    check_specs=[
        AssetCheckSpec(
            "online_matches_offline",
            asset="feast_online_store",
            description=(
                "Training-serving consistency: for a sample of entities, the online values equal "
                "the offline store's latest values."
            ),
        )
    ],
)
def feast_online_store(context: AssetExecutionContext, feast: FeastResource, delta: DeltaStorage):
    """Online feature values: the newest row of every entity within each view's TTL, served by `feast serve`.

    Incremental, like `feast materialize-incremental`: each load covers the feature rows since the
    previous load ended, up to the newest feature time (the first load: the TTL window before it).
    When the feature tables were rewritten since the previous load (late data rebuilt them), the
    load covers the whole TTL window again. Entities without a row in the TTL window serve nulls.
    Limits: Redis keeps a stored row whose event time is not older than the one written, so a
    rewritten value of the same as-of time reaches the SQLite store only; the consistency check
    below reports it.
    """
    store, lake = feast.store(), delta.store()
    versions = {name: lake.version(name) for name in FEATURE_TABLES}
    previous = context.instance.get_latest_materialization_event(context.asset_key)
    # The versions the previous load read; a load recorded before they were recorded counts as another version.
    loaded_from = (
        previous.asset_materialization.metadata.get("input_versions")
        if previous and previous.asset_materialization
        else None
    )
    rewritten = previous is not None and (loaded_from is None or loaded_from.value != versions)
    newest = pc.max(lake.read_arrow("user_features", columns=["feature_ts"])["feature_ts"]).as_py()
    window = materialize_incremental(store, newest, rewritten=rewritten)
    compared, mismatches = online_offline_mismatches(store)
    window_metadata = (
        {
            "window_start": MetadataValue.timestamp(window[0]),
            "window_end": MetadataValue.timestamp(window[1]),
        }
        if window
        else {"already_current": True}
    )
    yield MaterializeResult(
        metadata=window_metadata | {"input_versions": MetadataValue.json(versions)}
    )
    yield AssetCheckResult(
        check_name="online_matches_offline",
        passed=not mismatches,
        metadata={
            "entities_compared": MetadataValue.int(compared),
            "mismatches": MetadataValue.json(bounded(mismatches[:20])),
        },
    )


@asset_check(
    asset=feast_online_store,
    description=(
        f"Training-serving skew: the newest registered model's training set against the online values of the "
        f"entities active on the newest feature day, and against the newest day of logged traffic (what the "
        f"feature service actually served, `traffic_*`) once there is some. "
        f"PSI per feature (KS too for continuous ones): "
        f"warns at PSI >= {PSI_WARN}, fails at PSI >= {PSI_FAIL}. The chart of every feature's training and serving "
        f"distributions is an artifact of the model's MLflow run (serving_skew/): `chart` opens it in the MLflow UI "
        f"(`mlflow ui`, http://127.0.0.1:5000), `chart_file` is where the artifact store keeps it."
    ),
)
def serving_features_match_training(
    feast: FeastResource, delta: DeltaStorage, mlflow_tracking: MlflowTracking
):
    # The chart is linked, not embedded: an inline PNG of every feature's panel is far above the
    # metadata value cap (assets.publish.VALUE_CHARS), and a browser does not open file:// links
    # from the Dagster UI. The MLflow UI's address is MlflowTracking.ui_url.
    from lakehouse.ml.serving_skew import (
        measure_skew,
    )  # here: it loads pandas, and only this check needs it

    skew = measure_skew(feast.store(), delta.store(), mlflow_tracking.tracking_uri)
    if skew is None:
        return AssetCheckResult(
            passed=True, metadata={"compared": "nothing: no model is registered yet"}
        )
    from mlflow.tracking import (
        MlflowClient,
    )  # here: measure_skew has imported mlflow already; module import stays light

    experiment_id = (
        MlflowClient(mlflow_tracking.tracking_uri).get_run(skew.run_id).info.experiment_id
    )
    chart_path = f"serving_skew/{skew.chart_uri.rsplit('/', 1)[-1]}"
    traffic = skew.traffic
    status = worst_status(skew.features + (traffic.features if traffic else []))
    traffic_metadata = {"traffic": "none logged yet: the service's served-feature log is empty"}
    if traffic:
        traffic_metadata = {
            "traffic_day": str(traffic.day),
            "traffic_rows": MetadataValue.int(traffic.rows),
            "traffic_requests": MetadataValue.int(traffic.requests),
            "traffic_max_psi": MetadataValue.float(max(d.psi for d in traffic.features)),
            "traffic_features": MetadataValue.md(_drift_table(traffic.features)),
        }
    return AssetCheckResult(
        passed=status == "ok",
        severity=AssetCheckSeverity.WARN if status == "warn" else AssetCheckSeverity.ERROR,
        metadata={
            "status": status,
            "model": f"{skew.model_version} (run {skew.run_id})",
            "training_rows": MetadataValue.int(skew.training_rows),
            "serving_rows": MetadataValue.int(skew.serving_rows),
            "max_psi": MetadataValue.float(max(d.psi for d in skew.features)),
            "features": MetadataValue.md(_drift_table(skew.features)),
            "chart": MetadataValue.url(
                mlflow_tracking.run_url(experiment_id, skew.run_id, chart_path)
            ),
            "chart_file": _artifact_location(skew.chart_uri),
            **traffic_metadata,
        },
    )


def _drift_table(features) -> str:
    rows = [
        f"| {d.feature} | {d.psi:.3f} | "
        f"{'' if d.ks_statistic is None else f'{d.ks_statistic:.3f} (p={d.ks_pvalue:.2g})'} | "
        f"{d.status} |"
        for d in features
    ]
    return "| feature | PSI | KS | status |\n|---|---|---|---|\n" + "\n".join(rows)


def _artifact_location(uri: str) -> MetadataValue:
    """A local artifact as a path (the UI shows it to copy); any other as its URI, without user info or query."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return MetadataValue.path(url2pathname(parts.path))
    return MetadataValue.text(public_uri(uri))
