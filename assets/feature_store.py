"""Feast: register the feature repo and keep the online store current."""

from dagster import BackfillPolicy, MaterializeResult, MetadataValue, asset
import pyarrow.compute as pc

from lakehouse.feature_store import FEATURE_REPO, apply_definitions, materialize_latest
from resources.delta import DeltaStorage
from resources.feast import FeastResource


@asset(backfill_policy=BackfillPolicy.single_run(), deps=["user_features"], group_name="features", kinds={"feast"})
def feast_registry(feast: FeastResource):
    """The Feast registry: entities, feature views and feature services of feature_repo/, as `feast apply` registers them.

    Applying validates that every source is a readable Delta table with its timestamp columns, and
    removes objects that were deleted from the repo.
    """
    views = apply_definitions(feast.store())
    return MaterializeResult(metadata={"feature_views": MetadataValue.json(views), "feature_repo": MetadataValue.path(str(FEATURE_REPO))})


@asset(backfill_policy=BackfillPolicy.single_run(), deps=["feast_registry", "user_features"], group_name="features", kinds={"feast", "sqlite"})
def feast_online_store(feast: FeastResource, delta: DeltaStorage):
    """Online feature values: the newest user_activity row of every user, served by `feast serve`.

    Loads the rows of the feature views' TTL window that ends at the newest feature time (what
    `feast materialize-incremental` covers); users without a row in that window serve nulls.
    """
    newest = pc.max(delta.store().read_arrow("user_features", columns=["feature_ts"])["feature_ts"]).as_py()
    start, end = materialize_latest(feast.store(), newest)
    return MaterializeResult(metadata={"window_start": MetadataValue.timestamp(start), "window_end": MetadataValue.timestamp(end)})
