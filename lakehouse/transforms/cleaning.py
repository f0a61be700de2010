"""raw_events -> cleaned_events + quarantined_events: every raw line ends in exactly one of them.

Rules, in order (the first that applies is the line's quarantine reason):
- invalid_encoding: the line is not valid UTF-8 (raw_events keeps its bytes); its text would hold
  replacement characters, and two different ids could read as one;
- empty_line: nothing but ASCII whitespace (after removing a UTF-8 byte-order mark);
- malformed_json: not exactly one strict JSON (RFC 8259) object (none of the readers' extensions:
  NaN or Infinity, trailing commas, comments, single quotes, unquoted keys, leading zeros or "+",
  ".5" or "5.", raw control characters in strings, unknown escapes, lone surrogate escapes such as
  "\\ud800", whitespace other than space, tab, CR and LF), an object that repeats a key (which value
  would count is ambiguous), or a line with more than MAX_CONTAINERS '{' or '[' characters (Spark's
  parser gives up on nesting past about 1000 levels, DuckDB's does not) or a run of more than
  MAX_NUMBER_CHARS number characters (lakehouse/engines/api.py; Spark's refuses long numbers, DuckDB's
  does not); no event needs a tenth of either;
- wrong_type: a text field (ids, names, platform, item fields) that is not a JSON string;
- missing_event_id (an empty or blank id is missing too; so are blank user, device and session
  ids, which are then read as absent), unknown_event_name;
- bad_timestamp: timestamp, sent_at or received_at missing or not an ISO-8601 time, or a corrected
  event time that is not on the ingest day or the 3 days before (it would belong to no partition);
- wrong_type: a numeric property that is neither a finite number nor a text that reads as one
  (NaN, the infinities and overflows such as 1e999 included: one would make every sum infinite),
  or a count (quantity, item_count) that is not a whole number within 32 bits (2, "2" and 2.0 are 2);
- negative_price: price or revenue below zero;
- invalid_value: a value cleaned_events' schema forbids: a quantity below 1, an experiment variant
  outside the known ones (the schema check stays, as the guard against a rule that misses one);
- unsupported_currency: a drifted price in a currency other than USD;
- missing_currency: a drifted price (no price_usd) without a currency: its unit is unknown, and a
  guess would put a wrong number into every revenue figure;
- unknown_platform: a platform other than ios, android, web (a missing one becomes 'unknown');
- missing_identity: neither user_id nor anonymous_id;
- duplicate: a later delivery of an event_id already seen (the first valid delivery, by ingest
  date, file and line, wins), among the deliveries ingested from 30 days before the range on: a
  retry is a duplicate whichever dates a run builds, and event_id is unique across the table for
  deliveries less than 30 days apart.

Event time: devices' clocks can be off by minutes to days, the server's is not. Each event carries
the device time it happened (`timestamp`), the device time it was sent (`sent_at`) and the server
time it arrived (`received_at`). The device's offset cancels in `sent_at - timestamp`, so
event_ts = received_at - (sent_at - timestamp): the true time give or take the network delay, for
skewed clocks and for sessions sent days later alike.

Schema drift: `price_usd` (dollars) and, after the drift, `price` (cents) with `currency` map to
price_usd.

Identity: events before a login carry only the device's anonymous_id. Every event that has both
ids ties the device to a user; user_id is the event's own id, else the user the device logged in as
(the smallest such id if a device is shared), else the anonymous_id. For an event dated P, the ties
seen on ingest dates P - 30 days .. P + 3 days count: a window fixed by the event's own date, so a
partition comes out the same whichever range it is rebuilt in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from lakehouse.engines.api import F, Window, compat, conform, transformation
from lakehouse.events.vocabulary import EVENT_NAMES, MAX_LATENESS, PLATFORMS, VARIANTS
from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

WIRE_FIELDS = (
    "event_id",
    "event_name",
    "timestamp",
    "sent_at",
    "received_at",
    "user_id",
    "anonymous_id",
    "session_id",
    "platform",
)
NUMERIC_PROPERTIES = {
    "price_usd": "double",
    "price": "double",
    "quantity": "int",
    "revenue_usd": "double",
    "item_count": "int",
}
PROPERTIES = (
    "item_id",
    "item_category",
    "currency",
    "order_id",
    "source_page",
    "experiment_variant",
    *NUMERIC_PROPERTIES,
)
# Text fields must be JSON strings: any other value is seen (wrong_type), not rendered as text. Times
# and numeric properties are read as the text of any value: a number sent as a string counts, and
# a value of the wrong type is seen (bad_timestamp, wrong_type), not silently nulled. Properties not
# listed are ignored.
TIME_FIELDS = ("timestamp", "sent_at", "received_at")
WIRE_JSON = {
    **{name: "text" if name in TIME_FIELDS else "string" for name in WIRE_FIELDS},
    "properties": {
        **dict.fromkeys((p for p in PROPERTIES if p not in NUMERIC_PROPERTIES), "string"),
        **dict.fromkeys(NUMERIC_PROPERTIES, "text"),
    },
}
OUTCOMES = ("cleaned", "quarantined", "outside_range")
LINE_KEY = ("ingest_date", "source_file", "line_number")  # identifies a raw line
IDENTITY_LOOKBACK = timedelta(days=30)
MAX_CONTAINERS = 500
# Blank ids (empty, or only ASCII whitespace) are no ids. Spelled out: \s differs between Java and RE2.
_BLANK = r"^[ \t\n\r\f\x0B]*$"


def ingest_window(start: date, end: date) -> tuple[date, date]:
    """The raw ingest dates clean_events needs for event dates [start, end]: identity ties from 30 days
    before, late deliveries up to 3 days after."""
    return start - IDENTITY_LOOKBACK, end + MAX_LATENESS


@dataclass(frozen=True)
class CleaningResult:
    """Every raw row read, classified: `outcome` is one of OUTCOMES; `reason` says why a row is quarantined.

    `parsed` is the one parse of the raw rows that the classification reads three times (identity
    ties, valid and invalid rows); clean_events' `persist` computes it once. The classification
    itself carries no raw line (the widest column): only quarantined rows need it, and they get it
    back from `parsed`.
    """

    classified: DataFrame
    parsed: DataFrame
    batch_id: (
        str  # the publication the quarantined rows belong to (lakehouse/tables/publication.py)
    )

    @transformation
    def _with(self, outcome: str) -> DataFrame:
        return self.classified.filter(F.col("outcome") == outcome)

    @property
    @transformation
    def cleaned(self) -> DataFrame:
        return conform(self._with("cleaned"), CLEANED_EVENTS)

    @property
    @transformation
    def quarantined(self) -> DataFrame:
        lines = self.parsed.select(*LINE_KEY, "raw_line", "raw_bytes")
        quarantined = compat.settled(self._with("quarantined").join(lines, list(LINE_KEY)))
        return conform(quarantined.withColumn("batch_id", F.lit(self.batch_id)), QUARANTINE)

    @functools.cached_property
    def _tally(self) -> list[tuple[str, date, str | None, int]]:
        """Rows per (outcome, event_date, reason): one aggregate, which every count below reads."""
        rows = self.classified.groupBy("outcome", "event_date", "reason").count().collect()
        return [(row["outcome"], row["event_date"], row["reason"], row["count"]) for row in rows]

    def _sum(self, key: Callable[[str, date, str | None], object | None]) -> dict:
        """Rows summed by `key(outcome, event_date, reason)`; rows whose key is None are left out."""
        sums: dict = {}
        for outcome, event_date, reason, rows in self._tally:
            if (found := key(outcome, event_date, reason)) is not None:
                sums[found] = sums.get(found, 0) + rows
        return sums

    def counts(self) -> dict[str, int]:
        """Raw rows per outcome; they add up to the raw rows read."""
        return {outcome: 0 for outcome in OUTCOMES} | self._sum(lambda outcome, _, __: outcome)

    def quarantined_by_reason(self) -> dict[str, int]:
        return self._sum(lambda outcome, _, reason: reason if outcome == "quarantined" else None)

    def cleaned_by_event_date(self) -> dict[date, int]:
        """Cleaned rows per event date of the range."""
        return self._sum(
            lambda outcome, event_date, _: event_date if outcome == "cleaned" else None
        )

    @transformation
    def outside_range_by_dates(self) -> dict[tuple[date, date], int]:
        """Raw rows attributed to dates outside the range, by (event date, ingest date): lines that
        other partitions' runs publish."""
        rows = (
            self.classified.filter(F.col("outcome") == "outside_range")
            .groupBy("event_date", "ingest_date")
            .count()
            .collect()
        )
        return {(row["event_date"], row["ingest_date"]): row["count"] for row in rows}

    def rows_by_event_date(self) -> dict[date, int]:
        """Raw rows attributed to each event date of the range (cleaned + quarantined)."""
        return self._sum(
            lambda outcome, event_date, _: event_date if outcome != "outside_range" else None
        )


# ISO-8601 with a zone; Spark alone would also read "1115" as the year 1115.
# Hours stop at 23: DuckDB reads 24:00:00 as the next midnight, Spark as no time at all.
_ISO_8601 = r"^\d{4}-\d{2}-\d{2}[T ]([01]\d|2[0-3]):\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"


def _utc(text: Column) -> Column:
    return F.when(text.rlike(_ISO_8601), compat.parse_timestamp(text))


def _present(text: Column) -> Column:
    return F.when(~text.rlike(_BLANK), text)


def _typed(text: Column, kind: str) -> Column:
    """A numeric property's text as a number of its kind, or null."""
    number = compat.try_cast(text, "double")
    if kind == "double":
        return number
    # DuckDB rounds "2.5" to 3 and Spark refuses "2.0": both read a double and keep whole values in range.
    return F.when((number >= -(2**31)) & (number < 2**31) & (number % 1 == 0), number.cast("int"))


def _unsigned_zero(number: Column) -> Column:
    # -0.0 is 0.0: DuckDB keeps the sign, Spark drops it.
    return F.when(number == 0, F.lit(0.0)).otherwise(number)


def _not_finite(number: Column) -> Column:
    # x - x is 0 for every finite x, NaN for NaN and the infinities (and null for null), on both
    # engines; they do not spell an infinity literal the same way. Spark reads an overflow such as
    # 1e999 as no number, DuckDB as infinity: both are wrong_type.
    return (number - number) != 0


@transformation
def parse_events(raw: DataFrame) -> DataFrame:
    """Each raw row with its fields read as text, typed where they can be, and the corrected event time."""
    raw_columns = ("ingest_date", "source_file", "line_number", "raw_line", "raw_bytes")
    lines = raw.select(*raw_columns, F.regexp_replace("raw_line", "^\ufeff", "").alias("_line"))
    parsed = compat.json_objects(lines, "_line", WIRE_JSON)
    # A line over the container limit is no object, on either engine, and shows none of its fields.
    structured = F.col("_is_object") & (
        F.length("_line") - F.length(F.translate("_line", "{[", "")) <= MAX_CONTAINERS
    )
    wire = parsed.withColumn("_is_object", structured).withColumn(
        "_json", F.when(structured, F.col("_json"))
    )
    e, props = F.col("_json"), F.col("_json")["properties"]
    typed = {name: _typed(props[name], kind) for name, kind in NUMERIC_PROPERTIES.items()}
    wrong_type = F.lit(False)
    for name in NUMERIC_PROPERTIES:
        wrong_type = wrong_type | (
            props[name].isNotNull() & (typed[name].isNull() | _not_finite(typed[name]))
        )
    fields = wire.select(
        *raw_columns,
        F.col("raw_bytes").isNotNull().alias("_undecodable"),
        F.col("_line").rlike(_BLANK).alias("_blank"),  # trim() differs: DuckDB's also strips U+00A0
        "_is_object",
        "_not_string",
        e["event_name"].alias("event_name"),
        *[
            _present(e[name]).alias(name)
            for name in ("event_id", "user_id", "anonymous_id", "session_id")
        ],
        F.coalesce(e["platform"], F.lit("unknown")).alias("platform"),
        _utc(e["timestamp"]).alias("device_ts"),
        _utc(e["sent_at"]).alias("_sent_at"),
        _utc(e["received_at"]).alias("received_at"),
        _present(props["item_id"]).alias("item_id"),
        props["item_category"].alias("item_category"),
        _unsigned_zero(
            F.round(
                F.coalesce(
                    typed["price_usd"], F.when(props["currency"] == "USD", typed["price"] / 100)
                ),
                2,
            )
        ).alias("price_usd"),
        typed["quantity"].alias("quantity"),
        _present(props["order_id"]).alias("order_id"),
        _unsigned_zero(typed["revenue_usd"]).alias("revenue_usd"),
        props["source_page"].alias("source_page"),
        props["experiment_variant"].alias("experiment_variant"),
        wrong_type.alias("_wrong_type"),
        (props["currency"].isNotNull() & (props["currency"] != "USD")).alias("_foreign_currency"),
        (
            props["price_usd"].isNull() & props["price"].isNotNull() & props["currency"].isNull()
        ).alias("_no_currency"),
    )
    micros = F.unix_micros
    corrected = fields.withColumn(
        "_corrected",
        compat.timestamp_from_micros(
            micros("received_at") - (micros("_sent_at") - micros("device_ts"))
        ),
    )
    # An event dates from its ingest day or the MAX_LATENESS days before; any other time is not
    # believable, and would attribute the line to a partition that never reads it.
    corrected_date = F.to_date("_corrected")
    believable = (corrected_date >= F.date_sub("ingest_date", MAX_LATENESS.days)) & (
        corrected_date <= F.col("ingest_date")
    )
    timed = corrected.withColumn("event_ts", F.when(believable, F.col("_corrected")))
    return timed.withColumn("_event_date", F.to_date("event_ts")).drop("_sent_at", "_corrected")


def _reason() -> Column:
    c = F.col
    return (
        F.when(c("_undecodable"), F.lit("invalid_encoding"))
        .when(c("_blank"), F.lit("empty_line"))
        .when(~c("_is_object"), F.lit("malformed_json"))
        .when(c("_not_string"), F.lit("wrong_type"))
        .when(c("event_id").isNull(), F.lit("missing_event_id"))
        .when(
            ~c("event_name").isin(*EVENT_NAMES) | c("event_name").isNull(),
            F.lit("unknown_event_name"),
        )
        .when(c("event_ts").isNull(), F.lit("bad_timestamp"))
        .when(c("_wrong_type"), F.lit("wrong_type"))
        .when((c("price_usd") < 0) | (c("revenue_usd") < 0), F.lit("negative_price"))
        .when(
            (c("quantity") < 1) | ~c("experiment_variant").isin(*VARIANTS), F.lit("invalid_value")
        )
        .when(c("_foreign_currency"), F.lit("unsupported_currency"))
        .when(c("_no_currency"), F.lit("missing_currency"))
        .when(~c("platform").isin(*PLATFORMS, "unknown"), F.lit("unknown_platform"))
        .when(c("user_id").isNull() & c("anonymous_id").isNull(), F.lit("missing_identity"))
    )


def _stitched(valid: DataFrame, ties: DataFrame) -> DataFrame:
    """user_id resolved through the anonymous_id -> user_id ties seen near each event's date."""
    near = (
        F.col("t.tie_ingest_date") >= F.date_sub(F.col("e.event_date"), IDENTITY_LOOKBACK.days)
    ) & (F.col("t.tie_ingest_date") <= F.date_add(F.col("e.event_date"), MAX_LATENESS.days))
    anonymous = (
        valid.filter(F.col("user_id").isNull())
        .select("source_file", "line_number", "anonymous_id", "event_date")
        .alias("e")
    )
    linked = (
        anonymous.join(
            ties.alias("t"), (F.col("e.anonymous_id") == F.col("t.tie_anonymous_id")) & near
        )
        .groupBy("e.source_file", "e.line_number")
        .agg(F.min("t.tie_user_id").alias("_linked_user"))
    )
    resolved = compat.settled(valid.join(linked, ["source_file", "line_number"], "left"))
    return resolved.withColumn(
        "identity",
        F.when(F.col("user_id").isNotNull(), F.lit("logged_in"))
        .when(F.col("_linked_user").isNotNull(), F.lit("stitched"))
        .otherwise(F.lit("anonymous")),
    ).withColumn("user_id", F.coalesce("user_id", "_linked_user", "anonymous_id"))


@transformation
def clean_events(
    raw: DataFrame,
    start: date,
    end: date,
    persist: Callable[[DataFrame], DataFrame] = lambda df: df,
    batch_id: str = "unpublished",
) -> CleaningResult:
    """Classify raw rows; the cleaned and quarantined ones are those attributed to [start, end].

    Only raw rows of `ingest_window(start, end)` are read. Rows ingested before `start` only
    contribute identity ties (nothing ingested before an event happened can be that event). A row is
    attributed to the UTC date of its corrected event time, or to its ingest date when it has none;
    rows attributed to other dates are `outside_range`: they belong to another partition's run.
    `persist` (an engine's, see lakehouse.engines) computes the parse and the classification once
    for the tables, counts and checks that read them.
    """
    first_ingest, last_ingest = ingest_window(start, end)
    window = raw.filter(
        (F.col("ingest_date") >= F.lit(first_ingest)) & (F.col("ingest_date") <= F.lit(last_ingest))
    )
    parsed_all = persist(
        parse_events(window)
        .withColumn("reason", _reason())
        .withColumn("event_date", F.coalesce("_event_date", "ingest_date"))
    )
    ties = (
        parsed_all.filter(
            F.col("reason").isNull()
            & F.col("user_id").isNotNull()
            & F.col("anonymous_id").isNotNull()
        )
        .select(
            F.col("anonymous_id").alias("tie_anonymous_id"),
            F.col("user_id").alias("tie_user_id"),
            F.col("ingest_date").alias("tie_ingest_date"),
        )
        .distinct()
    )
    # Duplicates are ranked among valid rows only: a broken delivery never displaces a good one. They
    # are ranked over the whole ingest window, the 30 days before the range included: a retry ingested
    # in the range whose first delivery landed before it (and dates from before it) is a duplicate
    # whichever range the run builds, so building dates one at a time or together gives one table.
    first_seen = Window.partitionBy("event_id", F.col("reason").isNull()).orderBy(
        "ingest_date", "source_file", "line_number"
    )
    ranked = parsed_all.drop("raw_line", "raw_bytes").withColumn(
        "reason",
        F.when(
            F.col("reason").isNull() & (F.row_number().over(first_seen) > 1), F.lit("duplicate")
        ).otherwise(F.col("reason")),
    )
    parsed = ranked.filter(F.col("ingest_date") >= F.lit(start))
    valid = _stitched(parsed.filter(F.col("reason").isNull()), ties)
    invalid = parsed.filter(F.col("reason").isNotNull()).withColumn(
        "identity", F.lit(None).cast("string")
    )
    classified = valid.unionByName(invalid.withColumn("_linked_user", F.lit(None).cast("string")))
    in_range = (F.col("event_date") >= F.lit(start)) & (F.col("event_date") <= F.lit(end))
    outcome = (
        F.when(~in_range, F.lit("outside_range"))
        .when(F.col("reason").isNull(), F.lit("cleaned"))
        .otherwise(F.lit("quarantined"))
    )
    return CleaningResult(persist(classified.withColumn("outcome", outcome)), parsed_all, batch_id)
