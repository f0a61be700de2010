"""Feature layer: per-user activity features as of each day."""

from dagster import BackfillPolicy, asset
from pyspark.sql import functions as F

from assets.publish import publish_spark, schema_check
from lakehouse.schemas import USER_FEATURES
from lakehouse.transforms.user_activity import user_activity_features
from resources.delta import DeltaStorage
from resources.spark import SparkResource


@asset(backfill_policy=BackfillPolicy.single_run(), deps=["cleaned_events"], group_name="features", kinds={"delta", "spark"}, check_specs=[schema_check(USER_FEATURES)])
def user_features(delta: DeltaStorage, spark: SparkResource):
    """What each user had done before each UTC midnight: the inputs of the purchase-propensity model.

    One row per (user, as-of midnight D), for every D after the user's first active day up to the
    midnight after the newest event. Counts of events, sessions, views, cart adds and purchases over
    the 7 days before D, purchases and revenue over the 30 days before D, and days since the user was
    last active. Windows end strictly before D: nothing that happened at or after D is counted.
    Limits: day granularity (an as-of time is always a midnight); rebuilt in full on each run.
    """
    store = delta.store()
    cleaned = store.read_spark(spark.session(), "cleaned_events")
    last_event_day = cleaned.agg(F.max("event_date")).first()[0]
    yield from publish_spark(store, USER_FEATURES, user_activity_features(cleaned, last_event_day))
