"""Training-serving skew: what the serving model learnt from against the features served now.

Serving side: the online store's values, read through the feature service that the newest
registered model version's run recorded, for the entities active on the newest feature day (the
users with a `user_features` row at its newest as-of time, each with their favourite category, the
key of the category features). That is one as-of time, with every user known before it.

Training side, like for like: the rows of that run's training-set snapshot at its newest
prediction time, which is also one as-of time with every user known before it (the labels' rule).
The snapshot as a whole is not a comparable population. It pools every prediction time, and the
early ones have windows still filling up: in a 30-day lake a 30-day feature at the first
prediction time covers one day, and a category's 7-day views cover under 7 days for the first
week. Against all of it, a healthy 30-day demo scored PSI 0.32-0.37 on the 30-day counts; against
its newest prediction time it scored about 0.05. The newest prediction time is a label horizon (7
days) before the serving day, the closest the training set gets to it.

Features a row gets through another entity's key (the `category_activity` view, joined on
`favourite_category`) have one value per key at an as-of time, so they are compared by key
(`lakehouse.ml.drift.keyed_feature_drift`). The training rows' keys come from the labels table at
the version the run pinned, the entity rows the training set was built from. PSI for every other
feature, KS for the continuous (float) ones; thresholds and details are in `lakehouse.ml.drift`.

Logged traffic, when the service logs what it serves (`lakehouse.features.served_features`): the
training set is also compared with what was actually served, the newest day of logs with each
entity's last served row (so a user who called a hundred times counts once, as in training). That
is the population the model really scored, where the online-store side is the one it could have.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.compute as pc

from lakehouse.ml.drift import FeatureDrift, drift_chart, feature_drift
from lakehouse.ml.lineage import REGISTERED_MODEL, SNAPSHOT_ARTIFACT, TrainingLineage, read_lineage
from lakehouse.ml.retention import every_result
from lakehouse.ml.training_set import LABELS_ROLE
from lakehouse.tables.schemas import USER_FEATURES
from lakehouse.tables.storage import DeltaStore, read_table

ROW_KEYS = ("user_id",)  # the entity of a training row; the prediction time is event_timestamp
PREDICTION_TIME = "event_timestamp"

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


@dataclass(frozen=True)
class TrafficSkew:
    """The training set against the newest day of logged traffic."""

    day: date
    rows: int  # entities served that day
    requests: int
    features: list[FeatureDrift]


@dataclass(frozen=True)
class SkewReport:
    run_id: str
    model_version: str
    training_rows: int  # the rows compared: the training set's rows at its newest prediction time
    serving_rows: int
    features: list[FeatureDrift]
    chart_uri: str  # the PNG, an artifact of the model's run
    training_time: datetime | None = None  # that prediction time
    traffic: TrafficSkew | None = None  # None until the service has logged traffic


def serving_model(client: MlflowClient) -> tuple[str, str] | None:
    """(run id, version) of the newest registered version of the model, or None before the first."""
    versions = every_result(
        client.search_model_versions,
        filter_string=f"name = '{REGISTERED_MODEL}'",
        order_by=["version_number DESC"],
    )
    newest = next(
        (mv for mv in versions if mv.run_id), None
    )  # newest first: usually the first page is all it reads
    return (newest.run_id, str(newest.version)) if newest else None


def recent_entity_rows(delta: DeltaStore) -> list[dict[str, str]]:
    """The users active on the newest feature day, keyed as the training labels are."""
    table = delta.read_arrow(
        USER_FEATURES.name, columns=["user_id", "feature_ts", "favourite_category_30d"]
    )
    newest = table.filter(pc.equal(table["feature_ts"], pc.max(table["feature_ts"])))
    # A user without views has no favourite category: "" matches no category row, so its features
    # are served as nulls, as they are in training for a null key.
    return [
        {"user_id": r["user_id"], "favourite_category": r["favourite_category_30d"] or ""}
        for r in newest.to_pylist()
    ]


def newest_prediction_time(training: pd.DataFrame) -> pd.DataFrame:
    """The training rows at the newest prediction time: the training sample a serving day is compared with."""
    return training[training[PREDICTION_TIME] == training[PREDICTION_TIME].max()]


def keyed_features(feast_store, service) -> dict[str, str]:
    """feature -> the row column keying it, for the service's views joined on a key that is not the row's own."""
    keyed = {}
    for projection in service.feature_view_projections:
        join_keys = [
            projection.join_key_map.get(c.name, c.name)
            for c in feast_store.get_feature_view(projection.name).entity_columns
        ]
        if tuple(join_keys) == ROW_KEYS:
            continue
        if len(join_keys) != 1:
            raise ValueError(
                f"feature view {projection.name} is joined on {join_keys}: only one key column is supported"
            )
        keyed |= dict.fromkeys((f.name for f in projection.features), join_keys[0])
    return keyed


def _training_keys(
    delta: DeltaStore, lineage: TrainingLineage, training: pd.DataFrame, key_columns: list[str]
) -> pd.DataFrame:
    # The entity rows of the run's training set are the labels table at its pinned version.
    labels = next(t for t in lineage.inputs if t.role == LABELS_ROLE)
    columns = [*ROW_KEYS, PREDICTION_TIME, *key_columns]
    rows = read_table(labels.uri, labels.version, columns, delta.storage_options).to_pandas()
    rows = rows[rows[PREDICTION_TIME] == training[PREDICTION_TIME].max()].drop_duplicates(
        [*ROW_KEYS, PREDICTION_TIME]
    )
    return training.merge(rows, on=[*ROW_KEYS, PREDICTION_TIME], how="left", validate="many_to_one")


def logged_traffic(
    service, names: list[str], key_columns: list[str]
) -> tuple[date, pd.DataFrame, int] | None:
    """(the newest day of the service's logs, each entity's last served row that day with features
    named as in training, the requests that day); None when the service logs nothing or has not yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError
    from feast.feature_logging import LOG_DATE_FIELD, LOG_TIMESTAMP_FIELD, REQUEST_ID_FIELD

    from lakehouse.features.feast_delta import DeltaLoggingDestination

    destination = service.logging_config.destination if service.logging_config else None
    if not isinstance(destination, DeltaLoggingDestination):
        return None
    try:
        logs = DeltaTable(destination.path).to_pyarrow_dataset()
    except TableNotFoundError:
        return None
    newest_day = pc.max(logs.to_table(columns=[LOG_DATE_FIELD])[LOG_DATE_FIELD]).as_py()
    if newest_day is None:
        return None
    renamed = {
        f"{p.name_to_use()}__{f.name}": f.name
        for p in service.feature_view_projections
        for f in p.features
        if f.name in names
    }
    keys = [*ROW_KEYS, *key_columns]  # logged as the request carried them
    day = logs.to_table(
        columns=[*keys, *renamed, LOG_TIMESTAMP_FIELD, REQUEST_ID_FIELD],
        filter=pc.field(LOG_DATE_FIELD) == newest_day,
    ).to_pandas()
    last = day.sort_values(LOG_TIMESTAMP_FIELD, kind="stable").drop_duplicates(
        list(ROW_KEYS), keep="last"
    )
    return (
        newest_day,
        last.rename(columns=renamed)[[*keys, *renamed.values()]].reset_index(drop=True),
        day[REQUEST_ID_FIELD].nunique(),
    )


def _continuous(feast_store, refs: tuple[str, ...]) -> set[str]:
    dtypes = {
        f"{fv.name}:{f.name}": f.dtype
        for fv in feast_store.list_feature_views()
        for f in fv.features
    }
    from feast.types import Float32, Float64

    return {ref.split(":", 1)[1] for ref in refs if dtypes.get(ref) in (Float32, Float64)}


def measure_skew(feast_store, delta: DeltaStore, tracking_uri: str) -> SkewReport | None:
    """Compare the serving model's training set with the online values; None if no model is registered."""
    from mlflow.tracking import (
        MlflowClient,
    )  # here: every Dagster process imports this module, few call it

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
    from lakehouse.features.served_features import not_logged

    with not_logged():  # this read is the check's, not traffic
        served = feast_store.get_online_features(features=service, entity_rows=entity_rows).to_df()
    if missing := [n for n in names if n not in served.columns]:
        raise ValueError(
            f"feature service {lineage.feature_service} no longer serves {missing}, "
            f"which model run {run_id} was trained on"
        )
    keys = {
        name: key for name, key in keyed_features(feast_store, service).items() if name in names
    }
    key_columns = sorted(set(keys.values()))
    # The keys the rows were served with (entity order is row order), not whatever to_df echoes back.
    served = served.drop(columns=[c for c in key_columns if c in served.columns]).assign(
        **{c: [row.get(c) for row in entity_rows] for c in key_columns}
    )
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = pd.read_parquet(
            client.download_artifacts(run_id, SNAPSHOT_ARTIFACT, tmp),
            columns=[*ROW_KEYS, PREDICTION_TIME, *names],
        )
        training = newest_prediction_time(snapshot)
        if key_columns:
            training = _training_keys(delta, lineage, training, key_columns)
        continuous = _continuous(feast_store, lineage.feature_refs)
        report = feature_drift(training, served, names, continuous, keys=keys)
        traffic = None
        if (logged := logged_traffic(service, names, key_columns)) is not None:
            day, rows, requests = logged
            traffic = TrafficSkew(
                day,
                len(rows),
                requests,
                feature_drift(training, rows, names, continuous, keys=keys),
            )
        chart = drift_chart(
            training,
            served,
            report,
            Path(tmp) / f"serving_skew_{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.png",
        )
        client.log_artifact(run_id, str(chart), "serving_skew")
    chart_uri = f"{run.info.artifact_uri}/serving_skew/{chart.name}"
    training_time = pd.Timestamp(training[PREDICTION_TIME].iloc[0]).to_pydatetime()
    return SkewReport(
        run_id, version, len(training), len(served), report, chart_uri, training_time, traffic
    )
