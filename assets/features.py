"""Feature and label tables: per-user and per-category activity as of each day, and the model's target.

The three are computed together, from one pinned version of cleaned_events, so that a model's
features and labels always agree on what happened (the training step refuses tables that do not).
"""

from dagster import AssetExecutionContext, AssetSpec, BackfillPolicy, multi_asset

from assets.automation import rebuilt_with_its_inputs
from assets.publish import publish, schema_check
from lakehouse.tables.schemas import CATEGORY_FEATURES, TRAINING_LABELS, USER_FEATURES
from lakehouse.transforms.user_activity import (
    category_activity_features,
    purchase_labels,
    user_activity_features,
)
from resources.delta import DeltaStorage
from resources.engine import EngineResource

USER_FEATURES_DEFINITION = """What each user had done before each UTC midnight: the model's inputs.

One row per (user, as-of midnight D), for every D after the user's first active day up to the
midnight after the newest event: counts of events, sessions, views, cart adds and purchases over
the 1, 7 and 30 days before D, revenue over 30 days, days since the user was last active, the
share of cart sessions abandoned, and the favourite category with its share of views. Windows
end strictly before D: nothing that happened at or after D is counted.
Limits: day granularity (an as-of time is always a midnight); rebuilt in full on each run."""

CATEGORY_FEATURES_DEFINITION = """How each item category was doing before each UTC midnight: the model's second grain.

One row per (category, as-of midnight D) after the category's first day: product views and cart
adds in the 7 days before D and their ratio. The model sees the row of the user's favourite
category (see user_features). Limits: purchases carry no category, so there is no category
conversion to purchase; rebuilt in full on each run."""

TRAINING_LABELS_DEFINITION = """Did the user purchase in the 7 days after the prediction time: the model's target.

One row per (user, UTC midnight D) for users first seen before D, labelled 1 if cleaned_events has
a purchase_completed of theirs in [D, D + 7 days). Only days whose whole 7-day window lies inside
the data are labelled, so the newest week of data has no labels yet."""

# Each table: its schema, its group in the UI, its business definition, and the transformation that builds it.
TABLES = {
    USER_FEATURES.name: (
        USER_FEATURES,
        "features",
        USER_FEATURES_DEFINITION,
        user_activity_features,
    ),
    CATEGORY_FEATURES.name: (
        CATEGORY_FEATURES,
        "features",
        CATEGORY_FEATURES_DEFINITION,
        category_activity_features,
    ),
    TRAINING_LABELS.name: (TRAINING_LABELS, "ml", TRAINING_LABELS_DEFINITION, purchase_labels),
}


@multi_asset(
    specs=[
        AssetSpec(
            name,
            deps=["cleaned_events"],
            group_name=group,
            kinds={"delta", "pyspark"},
            description=definition,
            automation_condition=rebuilt_with_its_inputs,
        )
        for name, (_, group, definition, _) in TABLES.items()
    ],
    check_specs=[schema_check(schema) for schema, *_ in TABLES.values()],
    can_subset=True,
    backfill_policy=BackfillPolicy.single_run(),
)
def features_and_labels(
    context: AssetExecutionContext, delta: DeltaStorage, engine: EngineResource
):
    """user_features, category_features and training_labels from one version of cleaned_events.

    The version is pinned when the computation starts (the late-data automation can commit at any
    moment) and recorded in every table's commit. When a table's commit finds rows there computed from
    a newer cleaned_events version, all of the selected tables are computed again from the newest.
    """
    store, runner = delta.store(), engine.engine()
    selected = [
        TABLES[key.path[-1]]
        for key in sorted(context.selected_asset_keys, key=lambda k: k.path[-1])
    ]

    def compute():
        version = store.version("cleaned_events")
        cleaned, last_day = (
            runner.read(store, "cleaned_events", version),
            store.last_day("cleaned_events", "event_date", version),
        )
        return {
            schema: runner.batch(build(cleaned, last_day)) for schema, _, _, build in selected
        }, {"cleaned_events": version}

    yield from publish(context, store, compute)
