"""One schema per table, defined once.

Each `TableSchema` is the single source for a table's columns: the Arrow schema deltalake writes,
the Spark schema Spark writes, the pandera schemas that guard every commit, and the column
documentation shown in the Dagster UI all derive from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from lakehouse.events.vocabulary import CATEGORIES, EVENT_NAMES, PLATFORMS, VARIANTS


@dataclass(frozen=True)
class Check:
    """A column rule, made a pandera Check only when a batch is validated: importing pandera takes
    seconds (it pulls in pandas and pyspark), and every Dagster process imports the schemas."""

    name: str  # a pandera Check constructor
    args: tuple

    @classmethod
    def ge(cls, value) -> Check:
        return cls("ge", (value,))

    @classmethod
    def lt(cls, value) -> Check:
        return cls("lt", (value,))

    @classmethod
    def isin(cls, values) -> Check:
        return cls("isin", (tuple(values),))

    @classmethod
    def in_range(cls, low, high) -> Check:
        return cls("in_range", (low, high))

    def pandera(self):
        from pandera.api.checks import Check as PanderaCheck

        return getattr(PanderaCheck, self.name)(
            *(list(a) if isinstance(a, tuple) else a for a in self.args)
        )


IDENTITIES = ("logged_in", "stitched", "anonymous")
# ge(0) alone lets NaN through; every backend orders NaN above infinity, so lt(inf) rejects both.
_FINITE_NON_NEGATIVE = (Check.ge(0), Check.lt(float("inf")))
QUARANTINE_REASONS = (
    "invalid_encoding",
    "empty_line",
    "malformed_json",
    "missing_event_id",
    "unknown_event_name",
    "bad_timestamp",
    "wrong_type",
    "negative_price",
    "invalid_value",
    "unsupported_currency",
    "missing_currency",
    "unknown_platform",
    "missing_identity",
    "duplicate",
)

_ARROW_TYPES = {
    "string": pa.string(),
    "long": pa.int64(),
    "int": pa.int32(),
    "double": pa.float64(),
    "date": pa.date32(),
    # UTC tz-aware microseconds: keeps Delta at protocol 1/2 and is readable by Spark.
    "timestamp": pa.timestamp("us", tz="UTC"),
    "binary": pa.binary(),
}


@dataclass(frozen=True)
class Col:
    name: str
    dtype: str
    description: str
    nullable: bool = False
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    name: str
    description: str
    columns: tuple[Col, ...]
    unique: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = ()
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))

    def arrow(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, _ARROW_TYPES[c.dtype], nullable=c.nullable) for c in self.columns]
        )

    def spark(self):
        from pyspark.sql import types as T

        spark_types = {
            "string": T.StringType(),
            "long": T.LongType(),
            "int": T.IntegerType(),
            "double": T.DoubleType(),
            "date": T.DateType(),
            "timestamp": T.TimestampType(),
            "binary": T.BinaryType(),
        }
        return T.StructType(
            [T.StructField(c.name, spark_types[c.dtype], c.nullable) for c in self.columns]
        )

    def pandera_pyspark(self):
        import pandera.pyspark as pas

        fields = self.spark().fields
        return pas.DataFrameSchema(
            name=self.name,
            columns={
                c.name: pas.Column(
                    f.dataType, checks=[check.pandera() for check in c.checks], nullable=c.nullable
                )
                for c, f in zip(self.columns, fields)
            },
            unique=list(self.unique) or None,
            strict=True,
        )

    def pandera_polars(self):
        import pandera.polars as pap
        import polars as pl

        polars_types = {
            "string": pl.String,
            "long": pl.Int64,
            "int": pl.Int32,
            "double": pl.Float64,
            "date": pl.Date,
            "timestamp": pl.Datetime("us", "UTC"),
            "binary": pl.Binary,
        }
        return pap.DataFrameSchema(
            name=self.name,
            columns={
                c.name: pap.Column(
                    polars_types[c.dtype],
                    checks=[check.pandera() for check in c.checks],
                    nullable=c.nullable,
                )
                for c in self.columns
            },
            unique=list(self.unique) or None,
            strict=True,
        )

    def column_docs(self) -> dict[str, str]:
        return {c.name: c.description for c in self.columns}


RAW_EVENTS = TableSchema(
    name="raw_events",
    description="Every line landed, byte for byte, with where it came from. Nothing is parsed or dropped here.",
    columns=(
        Col("ingest_date", "date", "Day folder of the landing area the line was read from."),
        Col("source_file", "string", "Landing file, relative to the landing root."),
        Col(
            "line_number",
            "long",
            "1-based line number within the source file.",
            checks=(Check.ge(1),),
        ),
        Col("raw_line", "string", "The line as landed (without its newline), decoded as UTF-8."),
        Col(
            "raw_bytes",
            "binary",
            "The line's bytes, only when they are not valid UTF-8 (raw_line then shows U+FFFD for each "
            "invalid sequence); null when raw_line encoded as UTF-8 is exactly what landed.",
            nullable=True,
        ),
    ),
    unique=("source_file", "line_number"),
    partition_by=("ingest_date",),
)

CLEANED_EVENTS = TableSchema(
    name="cleaned_events",
    description=(
        "One row per event_id in the canonical event schema, event times corrected to UTC server time, "
        "user ids stitched."
    ),
    columns=(
        Col("event_id", "string", "Unique event identifier (first delivery wins)."),
        Col("event_name", "string", "What happened.", checks=(Check.isin(list(EVENT_NAMES)),)),
        Col(
            "event_ts",
            "timestamp",
            "When it happened, UTC: received_at - (sent_at - device timestamp), which removes device clock skew.",
        ),
        Col("event_date", "date", "UTC date of event_ts; the partition column."),
        Col("device_ts", "timestamp", "The device's own timestamp, as sent (may be skewed)."),
        Col("received_at", "timestamp", "When the server received the event."),
        Col(
            "user_id",
            "string",
            "The user: the logged-in id, else the id the device's anonymous_id logged in as, else the anonymous_id.",
        ),
        Col("anonymous_id", "string", "Device-scoped id sent with every event.", nullable=True),
        Col(
            "identity",
            "string",
            "How user_id was resolved.",
            checks=(Check.isin(list(IDENTITIES)),),
        ),
        Col(
            "session_id",
            "string",
            "App session the event belongs to (missing on some events).",
            nullable=True,
        ),
        Col(
            "platform",
            "string",
            "Client platform; 'unknown' when the event did not say.",
            checks=(Check.isin([*PLATFORMS, "unknown"]),),
        ),
        Col("item_id", "string", "Product, for view and cart events.", nullable=True),
        Col(
            "item_category", "string", "Product category, for view and cart events.", nullable=True
        ),
        Col(
            "price_usd",
            "double",
            "Unit price in USD (from price_usd, or price in cents with currency USD after the drift).",
            nullable=True,
            checks=_FINITE_NON_NEGATIVE,
        ),
        Col(
            "quantity", "int", "Units added, for cart events.", nullable=True, checks=(Check.ge(1),)
        ),
        Col("order_id", "string", "Order, for purchases.", nullable=True),
        Col(
            "revenue_usd",
            "double",
            "Order value in USD, for purchases.",
            nullable=True,
            checks=_FINITE_NON_NEGATIVE,
        ),
        Col("source_page", "string", "Page the product was seen on.", nullable=True),
        Col(
            "experiment_variant",
            "string",
            "Experiment arm of the user.",
            nullable=True,
            checks=(Check.isin(list(VARIANTS)),),
        ),
        Col("ingest_date", "date", "raw_events partition of the delivery kept."),
        Col("source_file", "string", "Landing file of the delivery kept."),
        Col("line_number", "long", "Line of the delivery kept.", checks=(Check.ge(1),)),
    ),
    unique=("event_id",),
    partition_by=("event_date",),
)

QUARANTINE = TableSchema(
    name="quarantined_events",
    description=(
        "Raw lines that did not become a cleaned event, each with the reason; with cleaned_events it "
        "accounts for every raw line."
    ),
    columns=(
        Col(
            "event_date",
            "date",
            "Event date the line is attributed to (its ingest date when it has no readable time); "
            "the partition column.",
        ),
        Col("ingest_date", "date", "raw_events partition of the line."),
        Col("source_file", "string", "Landing file of the line."),
        Col("line_number", "long", "Line within the file.", checks=(Check.ge(1),)),
        Col("raw_line", "string", "The line as landed, decoded as UTF-8."),
        Col(
            "raw_bytes",
            "binary",
            "The line's bytes when they are not valid UTF-8 (see raw_events).",
            nullable=True,
        ),
        Col(
            "reason",
            "string",
            "Why the line was not kept.",
            checks=(Check.isin(list(QUARANTINE_REASONS)),),
        ),
        Col("event_id", "string", "The event id, when the line had one.", nullable=True),
        Col(
            "batch_id",
            "string",
            "The cleaning run that wrote the row; a date's rows are those of the batch cleaned_events "
            "published for it (lakehouse/tables/publication.py).",
        ),
    ),
    unique=("source_file", "line_number"),
    partition_by=("event_date",),
)

USER_FEATURES = TableSchema(
    name="user_features",
    description=(
        "One row per (user, as-of time): the user's activity in windows that end strictly before the "
        "as-of time, so a model scoring at that time sees only what was known then."
    ),
    columns=(
        Col("user_id", "string", "The user (Feast entity `user`)."),
        Col(
            "feature_ts",
            "timestamp",
            "As-of time (a UTC midnight): windows cover days strictly before it.",
        ),
        Col("events_7d", "long", "Events in the 7 days before feature_ts.", checks=(Check.ge(0),)),
        Col(
            "sessions_7d",
            "long",
            "Sessions started in the 7 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "views_7d",
            "long",
            "Product views in the 7 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "carts_7d", "long", "Cart adds in the 7 days before feature_ts.", checks=(Check.ge(0),)
        ),
        Col(
            "purchases_7d",
            "long",
            "Purchases in the 7 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "purchases_30d",
            "long",
            "Purchases in the 30 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "revenue_30d",
            "double",
            "Purchase revenue (USD) in the 30 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "days_since_last_event",
            "int",
            "Whole days from the user's last active day to feature_ts (>= 1).",
            checks=(Check.ge(1),),
        ),
        Col("events_1d", "long", "Events on the day before feature_ts.", checks=(Check.ge(0),)),
        Col(
            "sessions_1d",
            "long",
            "Sessions started on the day before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "purchases_1d", "long", "Purchases on the day before feature_ts.", checks=(Check.ge(0),)
        ),
        Col(
            "events_30d", "long", "Events in the 30 days before feature_ts.", checks=(Check.ge(0),)
        ),
        Col(
            "sessions_30d",
            "long",
            "Sessions started in the 30 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "views_30d",
            "long",
            "Product views in the 30 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "carts_30d",
            "long",
            "Cart adds in the 30 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "cart_abandonment_rate_30d",
            "double",
            "Of the sessions started in the 30 days before feature_ts that added to cart, the share that "
            "bought nothing; null without such sessions.",
            nullable=True,
            checks=(Check.in_range(0, 1),),
        ),
        Col(
            "favourite_category_30d",
            "string",
            "Category the user viewed most in the 30 days before feature_ts (ties: alphabetical); null without views.",
            nullable=True,
            checks=(Check.isin(list(CATEGORIES)),),
        ),
        Col(
            "favourite_category_share_30d",
            "double",
            "Share of those views in the favourite category; null without views.",
            nullable=True,
            checks=(Check.in_range(0, 1),),
        ),
    ),
    unique=("user_id", "feature_ts"),
)

CATEGORY_FEATURES = TableSchema(
    name="category_features",
    description=(
        "One row per (item category, as-of time): how the category was doing in the 7 days before "
        "the as-of time. Joined to a user through the user's favourite category."
    ),
    columns=(
        Col("item_category", "string", "The category (Feast entity `item_category`)."),
        Col(
            "feature_ts",
            "timestamp",
            "As-of time (a UTC midnight): windows cover days strictly before it.",
        ),
        Col(
            "category_views_7d",
            "long",
            "Product views in the category in the 7 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "category_carts_7d",
            "long",
            "Cart adds in the category in the 7 days before feature_ts.",
            checks=(Check.ge(0),),
        ),
        Col(
            "category_cart_rate_7d",
            "double",
            "category_carts_7d / category_views_7d; null without views.",
            nullable=True,
            checks=(Check.ge(0),),
        ),
    ),
    unique=("item_category", "feature_ts"),
)

TRAINING_LABELS = TableSchema(
    name="training_labels",
    description=(
        "One row per (user, prediction time): did the user purchase in the 7 days starting at the "
        "prediction time. Only prediction times whose whole label window lies inside the data."
    ),
    columns=(
        Col("user_id", "string", "The user (Feast entity `user`)."),
        Col("event_timestamp", "timestamp", "Prediction time (a UTC midnight)."),
        Col(
            "label",
            "int",
            "1 if a purchase happened in [event_timestamp, event_timestamp + 7 days).",
            checks=(Check.isin([0, 1]),),
        ),
        Col(
            "favourite_category",
            "string",
            "The user's favourite category as of event_timestamp (see user_features); "
            "the key of the category features.",
            nullable=True,
        ),
    ),
    unique=("user_id", "event_timestamp"),
)
