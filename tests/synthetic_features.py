"""Feature tables and labels with a known distribution, written straight to Delta.

For tests and benchmarks of the ML layer (training, reproduction, skew) without running the event
pipeline: each user has a purchase propensity that drives both the purchase counts and the label,
so a model can learn it, and every feature is stationary over days unless `shift` scales it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from lakehouse.events.vocabulary import CATEGORIES
from lakehouse.tables.schemas import CATEGORY_FEATURES, TRAINING_LABELS, USER_FEATURES
from lakehouse.tables.storage import DeltaStore

FIRST_DAY = datetime(2026, 3, 1, tzinfo=timezone.utc)


def feature_rows(
    rng, propensity: np.ndarray, day: datetime, shift: float = 1.0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One as-of day: user features drawn around each user's propensity, category features, labels."""
    n = len(propensity)
    counts = lambda mean: rng.poisson(mean * shift, n)  # noqa: E731
    purchases_30d = counts(propensity * 4)
    favourite = rng.choice(np.array(CATEGORIES + (None,), dtype=object), n)
    users = pd.DataFrame(
        {
            "user_id": [f"u{i:04d}" for i in range(n)],
            "feature_ts": day,
            "events_7d": counts(12.0),
            "sessions_7d": counts(3.0),
            "views_7d": counts(6.0),
            "carts_7d": counts(2.0),
            "purchases_7d": counts(propensity),
            "purchases_30d": purchases_30d,
            "revenue_30d": purchases_30d * rng.lognormal(3.5, 0.4, n) * shift,
            "days_since_last_event": rng.integers(1, 6, n).astype("int32"),
            "events_1d": counts(2.0),
            "sessions_1d": counts(0.5),
            "purchases_1d": counts(propensity / 7),
            "events_30d": counts(50.0),
            "sessions_30d": counts(12.0),
            "views_30d": counts(25.0),
            "carts_30d": counts(8.0),
            "cart_abandonment_rate_30d": np.minimum(1.0, rng.beta(2, 3, n) * shift),
            "favourite_category_30d": favourite,
            "favourite_category_share_30d": np.where(favourite == None, np.nan, rng.beta(3, 3, n)),  # noqa: E711
        }
    )
    # Eight categories a day are too few to sample: each keeps its own level, scaled by the shift.
    views = np.round((400 + 50 * np.arange(len(CATEGORIES))) * shift).astype("int64")
    carts = np.round(views * (0.15 + 0.01 * np.arange(len(CATEGORIES)))).astype("int64")
    categories = pd.DataFrame(
        {
            "item_category": CATEGORIES,
            "feature_ts": day,
            "category_views_7d": views,
            "category_carts_7d": carts,
            "category_cart_rate_7d": carts / views,
        }
    )
    labels = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "event_timestamp": day,
            "label": (rng.random(n) < propensity / 3).astype("int32"),
            "favourite_category": favourite,
        }
    )
    return users, categories, labels


def land_feature_days(store: DeltaStore, rng, propensity, days: range, shift: float = 1.0) -> None:
    """Rewrite the three tables with `days` added (earlier rows unchanged): one new version each.

    Each commit records, as the assets do, the cleaned_events version it was computed from: here the
    last day landed stands for it (there is no cleaned_events table), the same for all three.
    """
    frames = [feature_rows(rng, propensity, FIRST_DAY + timedelta(days=d), shift) for d in days]
    for i, schema in enumerate((USER_FEATURES, CATEGORY_FEATURES, TRAINING_LABELS)):
        new = pa.Table.from_pandas(pd.concat([f[i] for f in frames]), preserve_index=False)
        old = store.read_arrow(schema.name) if store.version(schema.name) is not None else None
        data = (
            pa.concat_tables(
                [old.select(new.column_names).cast(schema.arrow()), new.cast(schema.arrow())]
            )
            if old
            else new
        )
        store.write_arrow(schema, data, inputs={"cleaned_events": days[-1]})
