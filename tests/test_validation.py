"""Spark batches are validated in one pass; pandera, running every rule its own way, is the reference."""

from datetime import date, datetime, timezone

import pyarrow as pa

from lakehouse.tables.schemas import CLEANED_EVENTS
from lakehouse.tables.validation import broken_rules, validate_spark

TS = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
ROW = {
    "event_id": "e1",
    "event_name": "cart_item_added",
    "event_ts": TS,
    "event_date": date(2026, 3, 1),
    "device_ts": TS,
    "received_at": TS,
    "user_id": "u1",
    "anonymous_id": "a1",
    "identity": "logged_in",
    "session_id": "s1",
    "platform": "ios",
    "item_id": "p1",
    "item_category": "toys",
    "price_usd": 2.5,
    "quantity": 1,
    "order_id": None,
    "revenue_usd": None,
    "source_page": "home",
    "experiment_variant": "A",
    "ingest_date": date(2026, 3, 1),
    "source_file": "f",
    "line_number": 1,
}
# Each breaks one rule, in a row of its own.
BROKEN = {
    "event_id": None,
    "user_id": None,
    "event_ts": None,
    "event_name": "app_crashed",
    "identity": "guessed",
    "platform": "windows",
    "price_usd": -0.01,
    "quantity": 0,
    "revenue_usd": float("nan"),
    "experiment_variant": "C",
    "line_number": 0,
}
# Worked out by hand: one row breaks each rule. NaN is no negative price (it orders above every
# number), so revenue's NaN breaks only the rule that it be below infinity.
BROKEN_RULES = {
    "column event_id: not_nullable": 1,
    "column user_id: not_nullable": 1,
    "column event_ts: not_nullable": 1,
    "column event_name: isin(['session_started', 'user_logged_in', 'product_viewed', "
    "'cart_item_added', 'purchase_completed'])": 1,
    "column identity: isin(['logged_in', 'stitched', 'anonymous'])": 1,
    "column platform: isin(['ios', 'android', 'web', 'unknown'])": 1,
    "column price_usd: greater_than_or_equal_to(0)": 1,
    "column quantity: greater_than_or_equal_to(1)": 1,
    "column revenue_usd: less_than(inf)": 1,
    "column experiment_variant: isin(['A', 'B'])": 1,
    "column line_number: greater_than_or_equal_to(1)": 1,
    "unique ['event_id']: duplicates": 1,
}


def _frame(spark, rows):
    nullable = pa.schema([field.with_nullable(True) for field in CLEANED_EVENTS.arrow()])
    return spark.createDataFrame(pa.Table.from_pylist(rows, nullable)).cache()


def _every_rule_broken(spark):
    broken = [
        ROW | {"event_id": f"e{i + 2}", column: value}
        for i, (column, value) in enumerate(BROKEN.items())
    ]
    return _frame(spark, [ROW, ROW, *broken])  # the second ROW repeats e1


def test_the_one_aggregate_counts_the_rows_breaking_each_rule(spark):
    counts = broken_rules(CLEANED_EVENTS.pandera_pyspark(), _every_rule_broken(spark))
    assert counts.pop("rows") == 2 + len(BROKEN)
    assert {rule: n for rule, n in counts.items() if n} == BROKEN_RULES
    assert len(counts) == 12 + 10 + 1  # the non-null columns, the column checks, the key


def test_a_valid_batch_passes_with_its_row_count(spark):
    report = validate_spark(
        CLEANED_EVENTS,
        _frame(
            spark, [ROW, ROW | {"event_id": "e2", "price_usd": None, "experiment_variant": None}]
        ),
    )
    assert report.passed, report.failures
    assert report.rows == 2


def test_a_broken_batch_fails_with_pandera_s_report_of_every_rule_it_breaks(spark):
    report = validate_spark(CLEANED_EVENTS, _every_rule_broken(spark))
    assert not report.passed and report.rows == 2 + len(BROKEN)
    # pandera's wording ("<kind> <reason>: <column>: ..."): pandera itself found each broken rule. The
    # frame is cached, as every batch is: pandera sees revenue's NaN only because the cache does not
    # prune batches by min/max (engines/spark.py).
    assert {f.split(": ")[1] for f in report.failures} >= set(BROKEN)
    assert any(
        "Duplicated rows [1] were found for columns ['event_id']" in f for f in report.failures
    )


def test_a_batch_of_the_wrong_shape_fails_naming_each_difference(spark):
    from pyspark.sql import functions as F

    changed = (
        _frame(spark, [ROW])
        .drop("platform")
        .withColumn("extra", F.lit(1))
        .withColumn("quantity", F.col("quantity").cast("long"))
    )
    report = validate_spark(CLEANED_EVENTS, changed)
    assert not report.passed
    for says in ("platform", "extra", "quantity"):
        assert any(says in f for f in report.failures), (says, report.failures)
