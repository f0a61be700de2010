"""raw_events -> cleaned_events: parse, validate, deduplicate, normalise time to UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakehouse.generator import EVENT_NAMES, PLATFORMS
from lakehouse.schemas import CLEANED_EVENTS

# The landed event shape (the seed's `cart_item_added`); properties vary by event name.
EVENT_JSON = T.StructType(
    [
        T.StructField("event_id", T.StringType()),
        T.StructField("event_name", T.StringType()),
        T.StructField("timestamp", T.StringType()),
        T.StructField("user_id", T.StringType()),
        T.StructField("session_id", T.StringType()),
        T.StructField("platform", T.StringType()),
        T.StructField(
            "properties",
            T.StructType(
                [
                    T.StructField("item_id", T.StringType()),
                    T.StructField("item_category", T.StringType()),
                    T.StructField("price_usd", T.DoubleType()),
                    T.StructField("quantity", T.IntegerType()),
                    T.StructField("order_id", T.StringType()),
                    T.StructField("revenue_usd", T.DoubleType()),
                    T.StructField("source_page", T.StringType()),
                    T.StructField("experiment_variant", T.StringType()),
                ]
            ),
        ),
    ]
)


OUTCOMES = ("cleaned", "duplicate", "rejected", "outside_range")


@dataclass(frozen=True)
class CleaningResult:
    """Every raw row, classified: `outcome` is one of OUTCOMES, `reason` says why a row was rejected."""

    classified: DataFrame

    def _with(self, outcome: str) -> DataFrame:
        return self.classified.filter(F.col("outcome") == outcome)

    @property
    def cleaned(self) -> DataFrame:
        return self._with("cleaned").select(*CLEANED_EVENTS.column_names)

    @property
    def rejected(self) -> DataFrame:
        return self._with("rejected").select("ingest_date", "source_file", "line_number", "raw_line", "reason")

    @property
    def duplicates(self) -> DataFrame:
        return self._with("duplicate").select("ingest_date", "source_file", "line_number", "event_id")

    def persisted(self) -> "CleaningResult":
        """Cache the classification so that the table, the counts and the checks share one parse."""
        return CleaningResult(self.classified.cache())

    def counts(self) -> dict[str, int]:
        """Raw rows per outcome; they add up to the raw rows read."""
        found = {row["outcome"]: row["count"] for row in self.classified.groupBy("outcome").count().collect()}
        return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    def rejected_by_reason(self) -> dict[str, int]:
        return {row["reason"]: row["count"] for row in self._with("rejected").groupBy("reason").count().collect()}


def parse_events(raw: DataFrame) -> DataFrame:
    """Parse each raw line into canonical columns; unparseable fields come back null."""
    e = F.from_json("raw_line", EVENT_JSON)
    # ISO-8601 with a zone ('Z' or an offset) is converted to UTC; the session time zone is UTC.
    event_ts = F.try_to_timestamp(e["timestamp"])
    return raw.select(
        "ingest_date",
        "source_file",
        "line_number",
        "raw_line",
        e["event_id"].alias("event_id"),
        e["event_name"].alias("event_name"),
        event_ts.alias("event_ts"),
        F.to_date(event_ts).alias("event_date"),
        e["user_id"].alias("user_id"),
        e["session_id"].alias("session_id"),
        e["platform"].alias("platform"),
        *[e["properties"][name].alias(name) for name in ("item_id", "item_category", "price_usd", "quantity", "order_id", "revenue_usd", "source_page", "experiment_variant")],
    )


def _rejection_reason() -> F.Column:
    return (
        F.when(F.col("event_id").isNull(), F.lit("unparseable_or_missing_event_id"))
        .when(F.col("event_ts").isNull(), F.lit("bad_timestamp"))
        .when(~F.col("event_name").isin(*EVENT_NAMES) | F.col("event_name").isNull(), F.lit("unknown_event_name"))
        .when(F.col("user_id").isNull() | F.col("session_id").isNull(), F.lit("missing_identity"))
        .when(~F.col("platform").isin(*PLATFORMS) | F.col("platform").isNull(), F.lit("unknown_platform"))
    )


def clean_events(raw: DataFrame, start: date, end: date) -> CleaningResult:
    """Classify raw rows; the cleaned ones are valid events with event_date in [start, end], one per event_id.

    The first delivery of an event_id wins, ordered by (ingest_date, source_file, line_number), so
    the choice does not depend on how Spark happens to partition the data.
    """
    parsed = parse_events(raw).withColumn("reason", _rejection_reason())
    # Rejected rows are ranked apart: a broken delivery never makes a later valid one a duplicate.
    first_seen = Window.partitionBy("event_id", F.col("reason").isNull()).orderBy("ingest_date", "source_file", "line_number")
    delivery = F.when(F.col("reason").isNull(), F.row_number().over(first_seen))
    outcome = (
        F.when(F.col("reason").isNotNull(), F.lit("rejected"))
        .when(F.col("_delivery") > 1, F.lit("duplicate"))
        .when(F.col("event_date").between(F.lit(start), F.lit(end)), F.lit("cleaned"))
        .otherwise(F.lit("outside_range"))
    )
    classified = parsed.withColumn("_delivery", delivery).withColumn("outcome", outcome).drop("_delivery")
    return CleaningResult(classified)
