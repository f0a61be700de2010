"""cleaned_events -> per-user daily activity, features as of each day, and purchase labels.

All three share one dense grid: a row for every (user, day) from the user's first active day on, with
zero activity on quiet days, so that "the 7 days before D" is simply the 7 rows before D's row.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from lakehouse.schemas import TRAINING_LABELS, USER_FEATURES

_ONE_DAY = timedelta(days=1)
ACTIVITY_COUNTS = ("events", "sessions", "views", "carts", "purchases")


def daily_user_activity(cleaned: DataFrame) -> DataFrame:
    """(user_id, day) -> event counts and purchase revenue of that UTC day."""
    name = F.col("event_name")

    def count_of(event_name: str) -> F.Column:
        return F.sum(F.when(name == event_name, 1).otherwise(0)).cast("long")

    return cleaned.groupBy("user_id", F.col("event_date").alias("day")).agg(
        F.count(F.lit(1)).cast("long").alias("events"),
        count_of("session_started").alias("sessions"),
        count_of("product_viewed").alias("views"),
        count_of("cart_item_added").alias("carts"),
        count_of("purchase_completed").alias("purchases"),
        F.sum(F.when(name == "purchase_completed", F.col("revenue_usd")).otherwise(0.0)).cast("double").alias("revenue"),
    )


def dense_user_days(daily: DataFrame, last_day: date) -> DataFrame:
    """Every (user, day) from the user's first active day through `last_day`, quiet days as zeros."""
    first = daily.groupBy("user_id").agg(F.min("day").alias("first_day"))
    grid = first.select("user_id", "first_day", F.explode(F.sequence("first_day", F.lit(last_day))).alias("day"))
    zeros = {c: 0 for c in ACTIVITY_COUNTS} | {"revenue": 0.0}
    return grid.join(daily, ["user_id", "day"], "left").fillna(zeros)


def _window(lo: int | None, hi: int) -> Window:
    w = Window.partitionBy("user_id").orderBy("day")
    return w.rowsBetween(Window.unboundedPreceding if lo is None else lo, hi)


def user_activity_features(cleaned: DataFrame, last_event_day: date) -> DataFrame:
    """Features as of every UTC midnight D after a user's first active day, through last_event_day + 1.

    Windows cover the days strictly before D (rows -7..-1 and -30..-1 of the dense grid), so no event
    at or after the as-of time contributes. The last as-of time is the midnight after the data ends,
    which is what the online store serves.
    """
    days = dense_user_days(daily_user_activity(cleaned), last_event_day + _ONE_DAY)
    w7, w30, before = _window(-7, -1), _window(-30, -1), _window(None, -1)
    last_active = F.max(F.when(F.col("events") > 0, F.col("day"))).over(before)
    features = days.select(
        "user_id",
        # Midnight UTC: the session time zone is UTC.
        F.col("day").cast("timestamp").alias("feature_ts"),
        "day",
        "first_day",
        *[F.sum(c).over(w7).alias(f"{c}_7d") for c in ACTIVITY_COUNTS],
        F.sum("purchases").over(w30).alias("purchases_30d"),
        F.round(F.sum("revenue").over(w30), 2).alias("revenue_30d"),
        F.datediff("day", last_active).alias("days_since_last_event"),
    )
    return features.filter(F.col("day") > F.col("first_day")).select(*USER_FEATURES.column_names)


def purchase_labels(cleaned: DataFrame, last_event_day: date, horizon_days: int = 7) -> DataFrame:
    """For every user known before midnight D: 1 if they purchase in [D, D + horizon).

    Only days D whose whole label window ends by last_event_day are labelled, so no label is a
    "no purchase" that is really "not seen yet".
    """
    last_label_day = last_event_day - (horizon_days - 1) * _ONE_DAY
    days = dense_user_days(daily_user_activity(cleaned), last_event_day)
    ahead = _window(0, horizon_days - 1)
    labelled = days.select(
        "user_id",
        "day",
        "first_day",
        (F.sum("purchases").over(ahead) > 0).cast("int").alias("label"),
    )
    return labelled.filter((F.col("day") > F.col("first_day")) & (F.col("day") <= F.lit(last_label_day))).select(
        "user_id", F.col("day").cast("timestamp").alias("event_timestamp"), "label"
    ).select(*TRAINING_LABELS.column_names)
