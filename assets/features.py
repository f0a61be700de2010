"""Feature layer: per-user and per-category activity features as of each day."""

from dagster import BackfillPolicy, asset

from lakehouse.tables.storage import DeltaStore

from assets.publish import publish, schema_check
from lakehouse.tables.schemas import CATEGORY_FEATURES, USER_FEATURES
from lakehouse.transforms.user_activity import category_activity_features, user_activity_features
from resources.delta import DeltaStorage
from resources.engine import EngineResource


def pinned_cleaned_events(store: DeltaStore, runner):
    """cleaned_events at its current version, its newest event date, and that version as the input to record.

    One version for the whole computation: the late-data automation can commit at any moment.
    """
    version = store.version("cleaned_events")
    return runner.read(store, "cleaned_events", version), store.last_day("cleaned_events", "event_date", version), {"cleaned_events": version}


@asset(backfill_policy=BackfillPolicy.single_run(), deps=["cleaned_events"], group_name="features", kinds={"delta", "pyspark"}, check_specs=[schema_check(USER_FEATURES)])
def user_features(delta: DeltaStorage, engine: EngineResource):
    """What each user had done before each UTC midnight: the inputs of the purchase-propensity model.

    One row per (user, as-of midnight D), for every D after the user's first active day up to the
    midnight after the newest event: counts of events, sessions, views, cart adds and purchases over
    the 1, 7 and 30 days before D, revenue over 30 days, days since the user was last active, the
    share of cart sessions abandoned, and the favourite category with its share of views. Windows
    end strictly before D: nothing that happened at or after D is counted.
    Limits: day granularity (an as-of time is always a midnight); rebuilt in full on each run.
    """
    store, runner = delta.store(), engine.engine()
    cleaned, last_day, inputs = pinned_cleaned_events(store, runner)
    yield from publish(store, USER_FEATURES, runner.batch(user_activity_features(cleaned, last_day)), inputs=inputs)


@asset(backfill_policy=BackfillPolicy.single_run(), deps=["cleaned_events"], group_name="features", kinds={"delta", "pyspark"}, check_specs=[schema_check(CATEGORY_FEATURES)])
def category_features(delta: DeltaStorage, engine: EngineResource):
    """How each item category was doing before each UTC midnight: a second grain for the model.

    One row per (category, as-of midnight D) after the category's first day: product views and cart
    adds in the 7 days before D and their ratio. The model sees the row of the user's favourite
    category (see user_features). Limits: purchases carry no category, so there is no category
    conversion to purchase; rebuilt in full on each run.
    """
    store, runner = delta.store(), engine.engine()
    cleaned, last_day, inputs = pinned_cleaned_events(store, runner)
    yield from publish(store, CATEGORY_FEATURES, runner.batch(category_activity_features(cleaned, last_day)), inputs=inputs)
