"""Cleaning without Dagster: hand-built raw lines with the answers worked out by hand."""

import json
from datetime import date, datetime, timezone

from lakehouse.schemas import CLEANED_EVENTS, RAW_EVENTS
from lakehouse.transforms.cleaning import clean_events
from lakehouse.validation import validate_spark


def _event(event_id, name="product_viewed", ts="2026-03-01T10:00:00.000Z", user="usr_1", **props):
    return json.dumps(
        {"event_id": event_id, "event_name": name, "timestamp": ts, "user_id": user, "session_id": "ses_1", "platform": "ios", "properties": props}
    )


D1, D2 = date(2026, 3, 1), date(2026, 3, 2)
RAW = [
    # (ingest_date, file, line, raw_line)
    (D1, "date=2026-03-01/events.jsonl", 1, _event("ev1", item_id="prod_1", price_usd=9.5)),
    (D1, "date=2026-03-01/events.jsonl", 2, _event("ev1", item_id="prod_1", price_usd=9.5)),  # retry: dropped
    (D1, "date=2026-03-01/events.jsonl", 3, _event("ev2", ts="2026-03-01T23:30:00-02:00")),  # 01:30 UTC on the 2nd
    (D1, "date=2026-03-01/events.jsonl", 4, "{not json"),
    (D1, "date=2026-03-01/events.jsonl", 5, _event("ev3", name="app_crashed")),
    (D1, "date=2026-03-01/events.jsonl", 6, ""),
    (D1, "date=2026-03-01/events.jsonl", 7, _event("ev4", name="purchase_completed", order_id="ord_1", revenue_usd=42.0)),
    (D1, "date=2026-03-01/events.jsonl", 8, _event("ev5", ts="yesterday")),
    (D1, "date=2026-03-01/events.jsonl", 9, _event("ev6", ts="2026-02-27T08:00:00Z")),  # outside the range
    (D2, "date=2026-03-02/events.jsonl", 1, _event("ev7", ts="2026-03-02T08:00:00Z", quantity=2)),
    (D1, "date=2026-03-01/events.jsonl", 10, _event("ev7", ts="2026-03-02T08:00:00Z", quantity=2)),  # earlier ingest: wins
]


def _clean(spark):
    raw = spark.createDataFrame(RAW, RAW_EVENTS.spark())
    return clean_events(raw, D1, D2)


def test_valid_events_are_kept_once_with_utc_times(spark):
    cleaned = {r["event_id"]: r for r in _clean(spark).cleaned.collect()}
    assert sorted(cleaned) == ["ev1", "ev2", "ev4", "ev7"]
    assert cleaned["ev2"]["event_ts"].replace(tzinfo=timezone.utc) == datetime(2026, 3, 2, 1, 30, tzinfo=timezone.utc)
    assert cleaned["ev2"]["event_date"] == D2
    assert cleaned["ev1"]["price_usd"] == 9.5 and cleaned["ev4"]["revenue_usd"] == 42.0
    assert cleaned["ev7"]["quantity"] == 2


def test_first_delivery_wins_by_ingest_date_then_file_then_line(spark):
    result = _clean(spark)
    cleaned = {r["event_id"]: r for r in result.cleaned.collect()}
    assert cleaned["ev7"]["ingest_date"] == D1
    dropped = sorted((r["event_id"], r["ingest_date"], r["line_number"]) for r in result.duplicates.collect())
    assert dropped == [("ev1", D1, 2), ("ev7", D2, 1)]


def test_invalid_lines_are_rejected_with_a_reason(spark):
    rejected = {r["line_number"]: r["reason"] for r in _clean(spark).rejected.collect()}
    assert rejected == {
        4: "unparseable_or_missing_event_id",
        5: "unknown_event_name",
        6: "unparseable_or_missing_event_id",
        8: "bad_timestamp",
    }


def test_cleaned_batch_passes_its_schema_and_a_broken_one_does_not(spark):
    cleaned = _clean(spark).cleaned
    assert validate_spark(CLEANED_EVENTS, cleaned).passed
    broken = cleaned.unionByName(cleaned.limit(1))  # a duplicated event_id
    report = validate_spark(CLEANED_EVENTS, broken)
    assert not report.passed and any("event_id" in f for f in report.failures)


def test_every_raw_row_has_exactly_one_outcome(spark):
    result = _clean(spark)
    counts = result.counts()
    assert counts == {"cleaned": 4, "duplicate": 2, "rejected": 4, "outside_range": 1}
    assert sum(counts.values()) == len(RAW)
    assert result.rejected_by_reason() == {"unparseable_or_missing_event_id": 2, "unknown_event_name": 1, "bad_timestamp": 1}


def test_a_broken_earlier_delivery_does_not_make_the_valid_one_a_duplicate(spark):
    raw = spark.createDataFrame(
        [
            (D1, "f", 1, _event("ev9", name="app_crashed")),
            (D1, "f", 2, _event("ev9")),
        ],
        RAW_EVENTS.spark(),
    )
    result = clean_events(raw, D1, D2)
    assert [r["event_id"] for r in result.cleaned.collect()] == ["ev9"]
    assert result.duplicates.count() == 0
