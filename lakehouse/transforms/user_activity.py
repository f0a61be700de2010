"""cleaned_events -> per-user and per-category features as of each day, and purchase labels.

All share dense grids: a row for every (user, day) - or (user, category, day), or (category, day) -
from the first active day on, with zero activity on quiet days, so that "the 7 days before D" is
simply the 7 rows before D's row.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

from lakehouse.engines.api import F, Window, compat, conform, transformation
from lakehouse.tables.schemas import CATEGORY_FEATURES, TRAINING_LABELS, USER_FEATURES

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_ONE_DAY = timedelta(days=1)
ACTIVITY_COUNTS = ("events", "sessions", "views", "carts", "purchases")
SESSION_COUNTS = ("cart_sessions", "abandoned_cart_sessions")


def _count_of(event_name: str) -> Column:
    return F.sum(F.when(F.col("event_name") == event_name, 1).otherwise(0)).cast("long")


@transformation
def daily_user_activity(cleaned: DataFrame) -> DataFrame:
    """(user_id, day) -> event counts and purchase revenue of that UTC day, and its sessions that
    added to cart (cart_sessions) and of those, the ones that bought nothing (abandoned_cart_sessions).
    A session counts on the day it started; events without a session_id are in no session."""
    name = F.col("event_name")
    daily = cleaned.groupBy("user_id", F.col("event_date").alias("day")).agg(
        F.count(F.lit(1)).cast("long").alias("events"),
        _count_of("session_started").alias("sessions"),
        _count_of("product_viewed").alias("views"),
        _count_of("cart_item_added").alias("carts"),
        _count_of("purchase_completed").alias("purchases"),
        F.sum(F.when(name == "purchase_completed", F.col("revenue_usd")).otherwise(0.0))
        .cast("double")
        .alias("revenue"),
    )
    sessions = (
        cleaned.where(F.col("session_id").isNotNull())
        .groupBy("user_id", "session_id")
        .agg(
            F.min("event_date").alias("day"),
            (_count_of("cart_item_added") > 0).alias("carted"),
            (_count_of("purchase_completed") > 0).alias("bought"),
        )
    )
    by_day = sessions.groupBy("user_id", "day").agg(
        F.sum(F.col("carted").cast("long")).alias("cart_sessions"),
        F.sum((F.col("carted") & ~F.col("bought")).cast("long")).alias("abandoned_cart_sessions"),
    )
    return compat.settled(
        daily.join(by_day, ["user_id", "day"], "left").fillna(dict.fromkeys(SESSION_COUNTS, 0))
    )


@transformation
def dense_user_days(daily: DataFrame, last_day: date) -> DataFrame:
    """Every (user, day) from the user's first active day through `last_day`, quiet days as zeros."""
    first = daily.groupBy("user_id").agg(F.min("day").alias("first_day"))
    grid = first.select(
        "user_id",
        "first_day",
        F.explode(compat.day_sequence(F.col("first_day"), F.lit(last_day))).alias("day"),
    )
    zeros = {c: 0 for c in ACTIVITY_COUNTS + SESSION_COUNTS} | {"revenue": 0.0}
    return compat.settled(grid.join(daily, ["user_id", "day"], "left").fillna(zeros))


def _window(lo: int | None, hi: int) -> Window:
    w = Window.partitionBy("user_id").orderBy("day")
    return w.rowsBetween(Window.unboundedPreceding if lo is None else lo, hi)


@transformation
def favourite_categories(cleaned: DataFrame, last_day: date) -> DataFrame:
    """(user_id, day) -> the category the user viewed most in the 30 days before `day`, and its share
    of those views; null when the user viewed nothing (with a category) then. Ties go to the
    alphabetically first category. Covers each user's days from their first active day to `last_day`."""
    first = cleaned.groupBy("user_id").agg(F.min("event_date").alias("first_day"))
    views = cleaned.where(
        (F.col("event_name") == "product_viewed") & F.col("item_category").isNotNull()
    )
    daily = views.groupBy("user_id", "item_category", F.col("event_date").alias("day")).agg(
        F.count(F.lit(1)).alias("category_views")
    )
    pairs = compat.settled(
        daily.select("user_id", "item_category").distinct().join(first, "user_id")
    )
    pair_days = pairs.select(
        "user_id",
        "item_category",
        F.explode(compat.day_sequence(F.col("first_day"), F.lit(last_day))).alias("day"),
    )
    grid = compat.settled(
        pair_days.join(daily, ["user_id", "item_category", "day"], "left").fillna(
            {"category_views": 0}
        )
    )
    w30 = Window.partitionBy("user_id", "item_category").orderBy("day").rowsBetween(-30, -1)
    windowed = grid.withColumn("views_30d", F.coalesce(F.sum("category_views").over(w30), F.lit(0)))
    per_day = Window.partitionBy("user_id", "day")
    ranked = windowed.withColumn("total", F.sum("views_30d").over(per_day)).withColumn(
        "rank",
        F.row_number().over(per_day.orderBy(F.col("views_30d").desc(), F.col("item_category"))),
    )
    seen = F.col("views_30d") > 0
    top = ranked.where(F.col("rank") == 1).select(
        "user_id",
        "day",
        F.when(seen, F.col("item_category")).alias("favourite_category_30d"),
        F.when(seen, F.round(F.col("views_30d") / F.col("total"), 4)).alias(
            "favourite_category_share_30d"
        ),
    )
    grid_days = first.select(
        "user_id", F.explode(compat.day_sequence(F.col("first_day"), F.lit(last_day))).alias("day")
    )
    return compat.settled(grid_days.join(top, ["user_id", "day"], "left"))


@transformation
def user_activity_features(cleaned: DataFrame, last_event_day: date) -> DataFrame:
    """Features as of every UTC midnight D after a user's first active day, through last_event_day + 1.

    Windows cover the days strictly before D (rows -1, -7..-1 and -30..-1 of the dense grid), so no
    event at or after the as-of time contributes. The last as-of time is the midnight after the data
    ends, which is what the online store serves.
    """
    last_day = last_event_day + _ONE_DAY
    days = dense_user_days(daily_user_activity(cleaned), last_day)
    w1, w7, w30, before = _window(-1, -1), _window(-7, -1), _window(-30, -1), _window(None, -1)
    last_active = F.max(F.when(F.col("events") > 0, F.col("day"))).over(before)
    windowed = days.select(
        "user_id",
        # Midnight UTC: the session time zone is UTC.
        F.col("day").cast("timestamp").alias("feature_ts"),
        "day",
        "first_day",
        *[F.sum(c).over(w7).alias(f"{c}_7d") for c in ACTIVITY_COUNTS],
        F.sum("purchases").over(w30).alias("purchases_30d"),
        F.round(F.sum("revenue").over(w30), 2).alias("revenue_30d"),
        F.datediff("day", last_active).alias("days_since_last_event"),
        *[F.sum(c).over(w1).alias(f"{c}_1d") for c in ("events", "sessions", "purchases")],
        *[
            F.sum(c).over(w30).alias(f"{c}_30d")
            for c in ("events", "sessions", "views", "carts", *SESSION_COUNTS)
        ],
    )
    # The rate is a second step over the window sums: SQLFrame cannot resolve a window expression
    # reused inside another expression of the same select.
    cart_sessions_30d, abandoned_30d = (
        F.col("cart_sessions_30d"),
        F.col("abandoned_cart_sessions_30d"),
    )
    features = windowed.withColumn(
        "cart_abandonment_rate_30d",
        F.when(cart_sessions_30d > 0, F.round(abandoned_30d / cart_sessions_30d, 4)),
    )
    features = compat.settled(
        features.join(favourite_categories(cleaned, last_day), ["user_id", "day"], "left")
    )
    return conform(features.filter(F.col("day") > F.col("first_day")), USER_FEATURES)


@transformation
def category_activity_features(cleaned: DataFrame, last_event_day: date) -> DataFrame:
    """Per item category, as of every UTC midnight D after its first day through last_event_day + 1:
    views and cart adds in the 7 days before D and their ratio (null without views)."""
    events = cleaned.where(F.col("item_category").isNotNull())
    daily = events.groupBy("item_category", F.col("event_date").alias("day")).agg(
        _count_of("product_viewed").alias("views"), _count_of("cart_item_added").alias("carts")
    )
    first = daily.groupBy("item_category").agg(F.min("day").alias("first_day"))
    grid = first.select(
        "item_category",
        "first_day",
        F.explode(compat.day_sequence(F.col("first_day"), F.lit(last_event_day + _ONE_DAY))).alias(
            "day"
        ),
    )
    days = compat.settled(
        grid.join(daily, ["item_category", "day"], "left").fillna({"views": 0, "carts": 0})
    )
    w7 = Window.partitionBy("item_category").orderBy("day").rowsBetween(-7, -1)
    windowed = days.select(
        "item_category",
        "day",
        "first_day",
        F.col("day").cast("timestamp").alias("feature_ts"),
        F.sum("views").over(w7).alias("category_views_7d"),
        F.sum("carts").over(w7).alias("category_carts_7d"),
    )
    views_7d, carts_7d = F.col("category_views_7d"), F.col("category_carts_7d")
    features = windowed.withColumn(
        "category_cart_rate_7d", F.when(views_7d > 0, F.round(carts_7d / views_7d, 4))
    )
    return conform(features.filter(F.col("day") > F.col("first_day")), CATEGORY_FEATURES)


@transformation
def purchase_labels(cleaned: DataFrame, last_event_day: date, horizon_days: int = 7) -> DataFrame:
    """For every user known before midnight D: 1 if they purchase in [D, D + horizon), with their
    favourite category as of D (the join key of the category features).

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
    labelled = labelled.filter(
        (F.col("day") > F.col("first_day")) & (F.col("day") <= F.lit(last_label_day))
    )
    # The user's favourite category as of D is the key of the category features the model also sees.
    labelled = compat.settled(
        labelled.join(favourite_categories(cleaned, last_event_day), ["user_id", "day"], "left")
    )
    labels = labelled.select(
        "user_id",
        F.col("day").cast("timestamp").alias("event_timestamp"),
        "label",
        F.col("favourite_category_30d").alias("favourite_category"),
    )
    return conform(labels, TRAINING_LABELS)
