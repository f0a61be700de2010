"""Training-serving skew: what the serving model learnt from against the features served now.

Training side: the training-set snapshot of the newest registered model version. Serving side:
the online store's values, read through the feature service that run recorded, for the entities
active on the newest feature day (the users with a `user_features` row at its newest as-of time,
each with their favourite category, the key of the category features). PSI for every feature, KS
for the continuous (float) ones; thresholds and the PSI/KS details are in `lakehouse.ml.drift`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.compute as pc

from lakehouse.ml.drift import FeatureDrift, drift_chart, feature_drift
from lakehouse.ml.lineage import REGISTERED_MODEL, SNAPSHOT_ARTIFACT, TrainingLineage, read_lineage
from lakehouse.ml.retention import every_result
from lakehouse.tables.schemas import USER_FEATURES
from lakehouse.tables.storage import DeltaStore

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@dataclass(frozen=True)
class SkewReport:
    run_id: str
    model_version: str
    training_rows: int
    serving_rows: int
    features: list[FeatureDrift]
    chart_uri: str  # the PNG, an artifact of the model's run


def serving_model(client: MlflowClient) -> tuple[str, str] | None:
    """(run id, version) of the newest registered version of the model, or None before the first."""
    versions = every_result(client.search_model_versions, filter_string=f"name = '{REGISTERED_MODEL}'", order_by=["version_number DESC"])
    newest = next((mv for mv in versions if mv.run_id), None)  # newest first: usually the first page is all it reads
    return (newest.run_id, str(newest.version)) if newest else None


def recent_entity_rows(delta: DeltaStore) -> list[dict[str, str]]:
    """The users active on the newest feature day, keyed as the training labels are."""
    table = delta.read_arrow(USER_FEATURES.name, columns=["user_id", "feature_ts", "favourite_category_30d"])
    newest = table.filter(pc.equal(table["feature_ts"], pc.max(table["feature_ts"])))
    # A user without views has no favourite category: "" matches no category row, so its features
    # are served as nulls, as they are in training for a null key.
    return [{"user_id": r["user_id"], "favourite_category": r["favourite_category_30d"] or ""} for r in newest.to_pylist()]


def _continuous(feast_store, refs: tuple[str, ...]) -> set[str]:
    dtypes = {f"{fv.name}:{f.name}": f.dtype for fv in feast_store.list_feature_views() for f in fv.features}
    from feast.types import Float32, Float64

    return {ref.split(":", 1)[1] for ref in refs if dtypes.get(ref) in (Float32, Float64)}


def measure_skew(feast_store, delta: DeltaStore, tracking_uri: str) -> SkewReport | None:
    """Compare the serving model's training set with the online values; None if no model is registered."""
    from mlflow.tracking import MlflowClient  # here: every Dagster process imports this module, few call it

    client = MlflowClient(tracking_uri)
    model = serving_model(client)
    if model is None:
        return None
    run_id, version = model
    run = client.get_run(run_id)
    lineage: TrainingLineage = read_lineage(run)
    names = [ref.split(":", 1)[1] for ref in lineage.feature_refs]
    entity_rows = recent_entity_rows(delta)
    # Through the service, so that its join-key mapping (favourite_category -> item_category) applies.
    service = feast_store.get_feature_service(lineage.feature_service)
    served = feast_store.get_online_features(features=service, entity_rows=entity_rows).to_df()
    if missing := [n for n in names if n not in served.columns]:
        raise ValueError(f"feature service {lineage.feature_service} no longer serves {missing}, which model run {run_id} was trained on")
    with tempfile.TemporaryDirectory() as tmp:
        training = pd.read_parquet(client.download_artifacts(run_id, SNAPSHOT_ARTIFACT, tmp), columns=names)
        report = feature_drift(training, served, names, _continuous(feast_store, lineage.feature_refs))
        chart = drift_chart(training, served, report, Path(tmp) / f"serving_skew_{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.png")
        client.log_artifact(run_id, str(chart), "serving_skew")
    chart_uri = f"{run.info.artifact_uri}/serving_skew/{chart.name}"
    return SkewReport(run_id, version, len(training), len(served), report, chart_uri)
