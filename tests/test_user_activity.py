"""Features and labels without Dagster, against values worked out by hand (see the comments)."""

import json
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from conftest import frame, rows_of

from lakehouse.tables.schemas import CLEANED_EVENTS, RAW_EVENTS
from lakehouse.transforms.cleaning import clean_events
from lakehouse.transforms.user_activity import (
    category_activity_features,
    purchase_labels,
    user_activity_features,
)

_N = 0


def _ev(user, name, when, revenue=None):
    global _N
    _N += 1
    ts = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)
    row = dict.fromkeys(CLEANED_EVENTS.column_names)
    row |= {
        "event_id": f"ev{_N}",
        "event_name": name,
        "event_ts": ts,
        "event_date": ts.date(),
        "device_ts": ts,
        "received_at": ts,
    }
    row |= {
        "user_id": user,
        "identity": "logged_in",
        "platform": "web",
        "revenue_usd": revenue,
        "ingest_date": ts.date(),
        "source_file": "f",
        "line_number": _N,
    }
    return tuple(row.values())


EVENTS = [
    # u1: a whole funnel on 03-01, a view on 03-03, a purchase at noon on 03-09.
    _ev("u1", "session_started", "2026-03-01 10:00"),
    _ev("u1", "product_viewed", "2026-03-01 10:01"),
    _ev("u1", "cart_item_added", "2026-03-01 10:02"),
    _ev("u1", "purchase_completed", "2026-03-01 10:03", revenue=50.0),
    _ev("u1", "product_viewed", "2026-03-03 09:00"),
    _ev("u1", "purchase_completed", "2026-03-09 12:00", revenue=20.0),
    # u2: two views.
    _ev("u2", "product_viewed", "2026-03-05 08:00"),
    _ev("u2", "product_viewed", "2026-03-12 08:00"),
]
LAST_DAY = date(2026, 3, 12)
COLUMNS = [
    "events_7d",
    "sessions_7d",
    "views_7d",
    "carts_7d",
    "purchases_7d",
    "purchases_30d",
    "revenue_30d",
    "days_since_last_event",
]


@pytest.fixture(scope="module")
def features(engine):
    rows = rows_of(engine, user_activity_features(frame(engine, EVENTS, CLEANED_EVENTS), LAST_DAY))
    return {(r["user_id"], r["feature_ts"].date()): tuple(r[c] for c in COLUMNS) for r in rows}


@pytest.mark.parametrize(
    "user, as_of, expected",
    [
        # 7-day window 02-23..03-01 holds the whole 03-01 funnel.
        ("u1", date(2026, 3, 2), (4, 1, 1, 1, 1, 1, 50.0, 1)),
        ("u1", date(2026, 3, 4), (5, 1, 2, 1, 1, 1, 50.0, 1)),
        # As of 03-09 00:00 the purchase at 12:00 that day has not happened: not counted.
        ("u1", date(2026, 3, 9), (1, 0, 1, 0, 0, 1, 50.0, 6)),
        ("u1", date(2026, 3, 10), (2, 0, 1, 0, 1, 2, 70.0, 1)),
        # 03-01 has left the 7-day window (03-06..03-12) but not the 30-day one.
        ("u1", date(2026, 3, 13), (1, 0, 0, 0, 1, 2, 70.0, 4)),
        ("u2", date(2026, 3, 6), (1, 0, 1, 0, 0, 0, 0.0, 1)),
        ("u2", date(2026, 3, 12), (1, 0, 1, 0, 0, 0, 0.0, 7)),
        ("u2", date(2026, 3, 13), (1, 0, 1, 0, 0, 0, 0.0, 1)),
    ],
)
def test_feature_values(features, user, as_of, expected):
    assert features[(user, as_of)] == expected


def test_one_row_per_day_after_the_first_active_day_through_the_day_after_the_data(features):
    u1 = sorted(d for u, d in features if u == "u1")
    u2 = sorted(d for u, d in features if u == "u2")
    assert (u1[0], u1[-1], len(u1)) == (date(2026, 3, 2), date(2026, 3, 13), 12)
    assert (u2[0], u2[-1], len(u2)) == (date(2026, 3, 6), date(2026, 3, 13), 8)


def _utc_midnight(day: int) -> datetime:
    return datetime(2026, 3, day, tzinfo=timezone.utc)


def test_feature_time_is_utc_midnight(engine):
    table = engine.to_arrow(user_activity_features(frame(engine, EVENTS, CLEANED_EVENTS), LAST_DAY))
    assert table["feature_ts"].type.tz == "UTC"
    # Aware datetimes compare as instants: a midnight of another zone labelled UTC would not be equal.
    u1 = sorted(
        t
        for t, user in zip(table["feature_ts"].to_pylist(), table["user_id"].to_pylist())
        if user == "u1"
    )
    assert u1 == [_utc_midnight(d) for d in range(2, 14)]  # 03-02 .. 03-13, as in the test above
    assert all(t.utcoffset() == timedelta(0) for t in u1)


@pytest.fixture
def los_angeles_local_time(engine, monkeypatch):
    """The process's local time zone is Los Angeles (UTC-8 in early March) for one test.

    The engine (and Spark's JVM) is started first, in the zone the suite runs in: only Python's local
    time changes, and it is restored afterwards."""
    engine.session  # noqa: B018 (starts the session before the zone changes)
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    assert (
        time.localtime(0).tm_hour == 16
    )  # 1970-01-01 00:00 UTC is 16:00 the day before there: the zone is in effect
    yield
    monkeypatch.undo()
    time.tzset()


def _raw(ingest_day: date, line_number: int, event_id: str, timestamp: str) -> tuple:
    body = {
        "event_id": event_id,
        "event_name": "product_viewed",
        "timestamp": timestamp,
        "sent_at": timestamp,
        "received_at": timestamp,
        "user_id": "u9",
        "anonymous_id": "anon_9",
        "session_id": "s9",
        "platform": "web",
        "properties": {"item_id": "prod_0001", "item_category": "books", "price_usd": 5.0},
    }
    return (
        ingest_day,
        f"date={ingest_day.isoformat()}/events.jsonl",
        line_number,
        json.dumps(body),
        None,
    )


def test_one_second_before_and_at_utc_midnight_are_different_days_whatever_the_local_zone(
    engine, los_angeles_local_time
):
    """23:59:59 UTC and 00:00:00 UTC the next day, from raw lines through cleaning to features: two days.

    By hand: the first event is on 03-01 and the second on 03-02 (UTC dates). Features are as of UTC
    midnights and count the days strictly before: as of 03-02 00:00 UTC only the 23:59:59 event (the
    00:00:00 one is at, not before, the as-of time); as of 03-03 00:00 UTC the 00:00:00 one on the day
    before, and both in the 7 days before. A day or midnight taken in the local zone (UTC-8) would put
    both events in 03-01 (15:59:59 and 16:00:00 there) and feature times 8 hours off."""
    raw = [
        _raw(date(2026, 3, 1), 1, "before", "2026-03-01T23:59:59.000Z"),
        _raw(date(2026, 3, 2), 1, "at", "2026-03-02T00:00:00.000Z"),
    ]
    with engine.persisting() as persist:
        cleaning = clean_events(
            frame(engine, raw, RAW_EVENTS), date(2026, 3, 1), date(2026, 3, 2), persist
        )
        cleaned = persist(cleaning.cleaned)
        events = {r["event_id"]: (r["event_ts"], r["event_date"]) for r in rows_of(engine, cleaned)}
        assert events == {
            "before": (datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone.utc), date(2026, 3, 1)),
            "at": (datetime(2026, 3, 2, 0, 0, 0, tzinfo=timezone.utc), date(2026, 3, 2)),
        }
        features = {
            r["feature_ts"]: (r["events_1d"], r["events_7d"], r["days_since_last_event"])
            for r in rows_of(engine, user_activity_features(cleaned, date(2026, 3, 2)))
        }
    assert features == {_utc_midnight(2): (1, 1, 1), _utc_midnight(3): (1, 2, 1)}
    assert all(t.utcoffset() == timedelta(0) for t in features)


def test_labels_cover_only_days_whose_whole_week_is_in_the_data(engine):
    labels = {
        (r["user_id"], r["event_timestamp"].date()): r["label"]
        for r in rows_of(engine, purchase_labels(frame(engine, EVENTS, CLEANED_EVENTS), LAST_DAY))
    }
    # Last labelled day: 03-12 - 6 = 03-06. u1's purchase at 03-09 is outside 03-02's week (03-02..03-08).
    assert labels == {
        ("u1", date(2026, 3, 2)): 0,
        ("u1", date(2026, 3, 3)): 1,
        ("u1", date(2026, 3, 4)): 1,
        ("u1", date(2026, 3, 5)): 1,
        ("u1", date(2026, 3, 6)): 1,
        ("u2", date(2026, 3, 6)): 0,
    }


def _session_event(user, session, name, when, category=None, revenue=None):
    row = dict(zip(CLEANED_EVENTS.column_names, _ev(user, name, when, revenue)))
    return tuple((row | {"session_id": session, "item_category": category}).values())


# u3: two sessions on 03-01 (s1 carts and buys, s2 carts and leaves), views only on 03-02, a lone cart add on 03-05.
SESSIONS = [
    _session_event("u3", "s1", "session_started", "2026-03-01 10:00"),
    _session_event("u3", "s1", "product_viewed", "2026-03-01 10:01", "books"),
    _session_event("u3", "s1", "cart_item_added", "2026-03-01 10:02", "books"),
    _session_event("u3", "s1", "purchase_completed", "2026-03-01 10:03", revenue=12.0),
    _session_event("u3", "s2", "product_viewed", "2026-03-01 12:00", "toys"),
    _session_event("u3", "s2", "cart_item_added", "2026-03-01 12:01", "toys"),
    _session_event("u3", "s3", "product_viewed", "2026-03-02 09:00", "toys"),
    _session_event("u3", "s3", "product_viewed", "2026-03-02 09:05", "books"),
    _session_event("u3", "s3", "product_viewed", "2026-03-02 09:10", "toys"),
    _session_event("u3", "s4", "cart_item_added", "2026-03-05 08:00", "home"),
]
NEW_COLUMNS = [
    "events_1d",
    "sessions_1d",
    "purchases_1d",
    "events_30d",
    "sessions_30d",
    "views_30d",
    "carts_30d",
    "cart_abandonment_rate_30d",
    "favourite_category_30d",
    "favourite_category_share_30d",
]


@pytest.mark.parametrize(
    "as_of, expected",
    [
        # Day before is 03-01: 6 events, one session_started, one purchase; s1 and s2 added to cart, s2 left.
        (
            date(2026, 3, 2),
            (6, 1, 1, 6, 1, 2, 2, 0.5, "books", 0.5),
        ),  # books 1 view, toys 1: the tie goes to books
        (date(2026, 3, 3), (3, 0, 0, 9, 1, 5, 2, 0.5, "toys", 0.6)),  # toys 3 of 5 views
        (
            date(2026, 3, 6),
            (1, 0, 0, 10, 1, 5, 3, 0.6667, "toys", 0.6),
        ),  # s4 abandoned too: 2 of 3 cart sessions
    ],
)
def test_window_session_and_category_features(engine, as_of, expected):
    cleaned = frame(engine, SESSIONS, CLEANED_EVENTS)
    rows = {
        r["feature_ts"].date(): tuple(r[c] for c in NEW_COLUMNS)
        for r in rows_of(engine, user_activity_features(cleaned, date(2026, 3, 5)))
    }
    assert rows[as_of] == expected


def test_category_features_and_the_favourite_category_on_labels(engine):
    cleaned = frame(engine, SESSIONS, CLEANED_EVENTS)
    categories = {
        (r["item_category"], r["feature_ts"].date()): (
            r["category_views_7d"],
            r["category_carts_7d"],
            r["category_cart_rate_7d"],
        )
        for r in rows_of(engine, category_activity_features(cleaned, date(2026, 3, 5)))
    }
    assert categories[("books", date(2026, 3, 2))] == (1, 1, 1.0)
    assert categories[("toys", date(2026, 3, 3))] == (3, 1, 0.3333)
    assert categories[("home", date(2026, 3, 6))] == (
        0,
        1,
        None,
    )  # a cart add without views: no rate
    assert (
        "home",
        date(2026, 3, 5),
    ) not in categories  # rows start the day after a category's first day
    labels = {
        r["event_timestamp"].date(): (r["label"], r["favourite_category"])
        for r in rows_of(engine, purchase_labels(cleaned, date(2026, 3, 5), horizon_days=2))
    }
    assert labels == {
        date(2026, 3, 2): (0, "books"),
        date(2026, 3, 3): (0, "toys"),
        date(2026, 3, 4): (0, "toys"),
    }
