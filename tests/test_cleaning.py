"""Cleaning without Dagster: the five data problems on hand-built raw lines, answers worked out by hand."""

import json
from datetime import date, datetime, timezone

import pytest
from conftest import frame, rows_of

from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE, RAW_EVENTS
from lakehouse.transforms.cleaning import clean_events

D1, D2, D4 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 4)


def _line(
    event_id,
    name="product_viewed",
    ts="2026-03-01T10:00:00.000Z",
    sent=None,
    received=None,
    user="usr_1",
    anon="anon_1",
    drop=(),
    **props,
):
    body = {
        "event_id": event_id,
        "event_name": name,
        "timestamp": ts,
        "sent_at": sent or ts,
        "received_at": received or ts,
        "user_id": user,
        "anonymous_id": anon,
        "session_id": "ses_1",
        "platform": "ios",
        "properties": props,
    }
    for field in drop:
        body.pop(field)
    return json.dumps(body)


def _utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


F1, F4 = "date=2026-03-01/events.jsonl", "date=2026-03-04/events.jsonl"
RAW = [
    # ingest_date, file, line, raw_line
    (D1, F1, 1, "\ufeff" + _line("ok1", price_usd=9.5)),  # byte-order mark at the start of the file
    (D1, F1, 2, _line("ok1", price_usd=9.5)),  # network retry -> duplicate
    # Device clock 2 days fast: received_at - (sent_at - timestamp) = 10:00:00.500 on 03-01.
    (
        D1,
        F1,
        3,
        _line(
            "skew",
            ts="2026-03-03T10:00:00.000Z",
            sent="2026-03-03T10:00:01.000Z",
            received="2026-03-01T10:00:01.500Z",
        ),
    ),
    # Schema drift: price in cents with a currency.
    (D1, F1, 4, _line("drift", name="cart_item_added", price=1999, currency="USD", quantity=2)),
    (D1, F1, 5, _line("eur", name="cart_item_added", price=500, currency="EUR", quantity=1)),
    # Missing fields: no platform, no session.
    (D1, F1, 6, _line("noplat", drop=("platform", "session_id"))),
    # Identity: anon_7 browses logged out, then logs in as usr_7; anon_8 never logs in.
    (D1, F1, 7, _line("pre_login", user=None, anon="anon_7")),
    (D1, F1, 8, _line("login", name="user_logged_in", user="usr_7", anon="anon_7")),
    (D1, F1, 9, _line("never", user=None, anon="anon_8")),
    # Malformed lines.
    (D1, F1, 10, ""),
    (D1, F1, 11, '{"event_id": "broken", "event_na'),
    (D1, F1, 12, _line("unknown", name="screen_rendered")),
    (D1, F1, 13, _line("qty", name="cart_item_added", price_usd=3.0, quantity="two")),
    (D1, F1, 14, _line("neg", price_usd=-4.0)),
    (
        D1,
        F1,
        15,
        _line("numts").replace(
            '"timestamp": "2026-03-01T10:00:00.000Z"', '"timestamp": 1772359200'
        ),
    ),
    (D1, F1, 16, _line("noid", user=None, anon=None)),
    (D1, F1, 17, _line(None)),
    # Outside the range [03-01, 03-02].
    (
        date(2026, 3, 5),
        "date=2026-03-05/events.jsonl",
        1,
        _line("later", ts="2026-03-05T08:00:00Z"),
    ),
    # Late: happened 03-01 23:00, sent and received on 03-04, landed in 03-04's folder.
    (
        D4,
        F4,
        1,
        _line(
            "late",
            ts="2026-03-01T23:00:00.000Z",
            sent="2026-03-04T08:00:00.000Z",
            received="2026-03-04T08:00:00.300Z",
        ),
    ),
    # Too late (5 days): no partition's late window reads it there, so it is quarantined on its ingest date.
    (
        D2,
        "date=2026-03-02/events.jsonl",
        1,
        _line(
            "too_late",
            ts="2026-02-25T10:00:00Z",
            sent="2026-03-02T10:00:00Z",
            received="2026-03-02T10:00:00Z",
        ),
    ),
]


@pytest.fixture(scope="module")
def cleaning(engine):
    with engine.persisting() as persist:
        yield engine, clean_events(frame(engine, RAW, RAW_EVENTS), D1, D2, persist)


@pytest.fixture(scope="module")
def result(cleaning):
    return cleaning[1]


@pytest.fixture(scope="module")
def quarantined(cleaning):
    engine, result = cleaning
    return rows_of(engine, result.quarantined)


@pytest.fixture(scope="module")
def cleaned(cleaning):
    engine, result = cleaning
    return {r["event_id"]: r for r in rows_of(engine, result.cleaned)}


def test_kept_events(cleaned):
    assert sorted(cleaned) == [
        "drift",
        "late",
        "login",
        "never",
        "noplat",
        "ok1",
        "pre_login",
        "skew",
    ]


def test_duplicates_first_delivery_wins(cleaned, quarantined):
    assert cleaned["ok1"]["line_number"] == 1
    duplicates = [
        (r["event_id"], r["line_number"]) for r in quarantined if r["reason"] == "duplicate"
    ]
    assert duplicates == [("ok1", 2)]


def test_clock_skew_is_corrected_with_server_time(cleaned):
    assert cleaned["skew"]["event_ts"].replace(tzinfo=timezone.utc) == _utc(
        "2026-03-01 10:00:00.500"
    )
    assert cleaned["skew"]["device_ts"].replace(tzinfo=timezone.utc) == _utc("2026-03-03 10:00:00")
    assert cleaned["skew"]["event_date"] == D1


def test_late_event_lands_in_its_own_event_date(cleaned):
    late = cleaned["late"]
    assert late["event_date"] == D1 and late["ingest_date"] == D4
    assert late["event_ts"].replace(tzinfo=timezone.utc) == _utc("2026-03-01 23:00:00.300")


def test_schema_drift_maps_cents_and_currency_to_price_usd(cleaned, quarantined):
    assert cleaned["drift"]["price_usd"] == 19.99 and cleaned["drift"]["quantity"] == 2
    assert cleaned["ok1"]["price_usd"] == 9.5
    reasons = {r["event_id"]: r["reason"] for r in quarantined}
    assert reasons["eur"] == "unsupported_currency"


def test_missing_fields_get_defaults(cleaned):
    assert cleaned["noplat"]["platform"] == "unknown" and cleaned["noplat"]["session_id"] is None


def test_identity_stitching(cleaned):
    assert (cleaned["pre_login"]["user_id"], cleaned["pre_login"]["identity"]) == (
        "usr_7",
        "stitched",
    )
    assert (cleaned["login"]["user_id"], cleaned["login"]["identity"]) == ("usr_7", "logged_in")
    assert (cleaned["never"]["user_id"], cleaned["never"]["identity"]) == ("anon_8", "anonymous")


def test_malformed_lines_are_quarantined_with_their_reason(quarantined):
    reasons = {r["line_number"]: r["reason"] for r in quarantined if r["ingest_date"] == D1}
    too_late = [(r["event_date"], r["reason"]) for r in quarantined if r["event_id"] == "too_late"]
    assert too_late == [(D2, "bad_timestamp")]
    assert reasons == {
        2: "duplicate",
        5: "unsupported_currency",
        10: "empty_line",
        11: "malformed_json",
        12: "unknown_event_name",
        13: "wrong_type",
        14: "negative_price",
        15: "bad_timestamp",
        16: "missing_identity",
        17: "missing_event_id",
    }
    raw_lines = {r["line_number"]: r["raw_line"] for r in quarantined}
    assert raw_lines[11] == RAW[10][3]


def test_every_raw_row_is_accounted_for(result):
    counts = result.counts()
    assert counts == {"cleaned": 8, "quarantined": 11, "outside_range": 1}
    assert sum(counts.values()) == len(RAW)
    assert result.rows_by_event_date() == {D1: 18, D2: 1}


def test_batches_pass_their_schemas_and_a_broken_one_does_not(cleaning):
    engine, result = cleaning
    assert engine.batch(result.cleaned).validate(CLEANED_EVENTS).passed
    assert engine.batch(result.quarantined).validate(QUARANTINE).passed
    broken = result.cleaned.unionByName(result.cleaned.limit(1))
    report = engine.batch(broken).validate(CLEANED_EVENTS)
    assert not report.passed and any("event_id" in f for f in report.failures)


def test_a_broken_earlier_delivery_does_not_make_the_valid_one_a_duplicate(engine):
    raw = frame(
        engine,
        [(D1, F1, 1, _line("ev9", name="app_crashed")), (D1, F1, 2, _line("ev9"))],
        RAW_EVENTS,
    )
    result = clean_events(raw, D1, D2)
    assert [r["event_id"] for r in rows_of(engine, result.cleaned)] == ["ev9"]
    assert [r["reason"] for r in rows_of(engine, result.quarantined)] == ["unknown_event_name"]


# Lines on which Spark's and DuckDB's JSON readers differ unless cleaning settles it.
_VALID = json.loads(_line("base", price_usd=1.0))
JSON_EDGES = [
    # (raw line, reason, event_id kept in the quarantine row)
    (
        json.dumps({**_VALID, "event_id": -1.5528355681953452e16}),
        "wrong_type",
        None,
    ),  # a float: each engine prints it its own way
    (json.dumps({**_VALID, "event_id": "e_int_user", "user_id": 12}), "wrong_type", "e_int_user"),
    (
        json.dumps({**_VALID, "event_id": "e_obj_platform", "platform": {"os": "ios"}}),
        "wrong_type",
        "e_obj_platform",
    ),
    (
        json.dumps({**_VALID, "event_id": "e_list_item", "properties": {"item_id": ["a"]}}),
        "wrong_type",
        "e_list_item",
    ),
    (
        '{"event_id": "e_dup", "event_id": "e_dup2", '
        + json.dumps(_VALID)[1:].replace('"event_id": "base", ', ""),
        "malformed_json",
        None,
    ),
    (
        json.dumps({**_VALID, "event_id": "e_dup_prop"})[:-2] + ', "price_usd": 2.0}}',
        "malformed_json",
        None,
    ),
    (
        json.dumps({**_VALID, "event_id": "e_truncated"})[:60],
        "malformed_json",
        None,
    ),  # Spark reads the fields before the break
    (json.dumps({**_VALID, "event_id": "e_two"}) + " {}", "malformed_json", None),
    (json.dumps({**_VALID, "event_id": "e_bracket"}) + "]", "malformed_json", None),
    (json.dumps({**_VALID, "event_id": "e_key"}) + ', "v": 1}', "malformed_json", None),
    (
        json.dumps({**_VALID, "event_id": "e_quotes"}).replace('"ios"', "'ios'"),
        "malformed_json",
        None,
    ),
    (
        json.dumps({**_VALID, "event_id": "e_nan", "properties": {"price_usd": float("nan")}}),
        "malformed_json",
        None,
    ),
    (
        json.dumps({**_VALID, "event_id": "e_zero"}).replace(
            '"price_usd": 1.0', '"price_usd": 01.0'
        ),
        "malformed_json",
        None,
    ),
    (
        json.dumps({**_VALID, "event_id": "e_tab"}).replace("ios", "i\tos"),
        "malformed_json",
        None,
    ),  # a raw tab
    (
        json.dumps({**_VALID, "event_id": "e_nan_text", "session_id": "NaN Infinity"}),
        None,
        "e_nan_text",
    ),  # in a string: fine
]
# Values the cleaning rules used to pass and the cleaned schema forbids: each is one quarantined line.
FORBIDDEN_VALUES = [
    (_line("v_nan", price_usd="NaN"), "wrong_type", "v_nan"),
    (
        _line("v_inf", name="purchase_completed", revenue_usd="Infinity", order_id="o1"),
        "wrong_type",
        "v_inf",
    ),
    (
        _line("v_overflow").replace('"properties": {}', '"properties": {"price_usd": 1e999}'),
        "wrong_type",
        "v_overflow",
    ),
    (_line("v_cents_overflow", price="1e400", currency="USD"), "wrong_type", "v_cents_overflow"),
    (_line("v_qty", name="cart_item_added", price_usd=2.0, quantity=0), "invalid_value", "v_qty"),
    (_line("v_variant", experiment_variant="Z"), "invalid_value", "v_variant"),
    (_line("v_no_currency", price=500), "missing_currency", "v_no_currency"),
    (_line("v_usd_wins", price_usd=5.0, price=500), None, "v_usd_wins"),
    (
        _line("v_ok", name="cart_item_added", price_usd=1e308, quantity=1, experiment_variant="A"),
        None,
        "v_ok",
    ),
]


# What a hostile landing file holds; each outcome follows from the rules in the cleaning module's docstring.
_CART = {"price_usd": 1.0}
HOSTILE = [
    (
        _line("h_deep_ignored").replace(
            '"platform"', '"junk": ' + "[" * 600 + "]" * 600 + ', "platform"'
        ),
        "malformed_json",
        None,
    ),
    ("[" * 100_000 + "]" * 100_000, "malformed_json", None),
    (
        _line("h_deep_ok").replace(
            '"platform"', '"junk": ' + "[" * 100 + "]" * 100 + ', "platform"'
        ),
        None,
        "h_deep_ok",
    ),
    (_line("h_crlf") + "\r", None, "h_crlf"),
    (_line("h_raw_control").replace('"ses_1"', '"ses\x07_1"'), "malformed_json", None),
    (_line("h_escaped_control\u0007\u001b"), None, "h_escaped_control\u0007\u001b"),
    (_line("h_lone_surrogate").replace('"ses_1"', '"\\ud800"'), "malformed_json", None),
    (_line("h_ünïcødé_🎉_עברית"), None, "h_ünïcødé_🎉_עברית"),
    (_line("h_whole_float", name="cart_item_added", quantity=2.0, **_CART), None, "h_whole_float"),
    (_line("h_whole_text", name="cart_item_added", quantity="2", **_CART), None, "h_whole_text"),
    (
        _line("h_fraction", name="cart_item_added", quantity=2.5, **_CART),
        "wrong_type",
        "h_fraction",
    ),
    (
        _line("h_fraction_text", name="cart_item_added", quantity="2.5", **_CART),
        "wrong_type",
        "h_fraction_text",
    ),
    (
        _line("h_int_overflow", name="cart_item_added", quantity=10**10, **_CART),
        "wrong_type",
        "h_int_overflow",
    ),
    (_line("h_price_text", price_usd=" 1e2 "), None, "h_price_text"),
    (_line("h_price_bool", price_usd=True), "wrong_type", "h_price_bool"),
    (_line(""), "missing_event_id", None),
    (_line(" \t"), "missing_event_id", None),
    (_line("h_blank_ids", user="", anon="  "), "missing_identity", "h_blank_ids"),
    (_line("h_leap", ts="2026-03-01T23:59:60Z"), "bad_timestamp", "h_leap"),
    (_line("h_lower", ts="2026-03-01t10:00:00z"), "bad_timestamp", "h_lower"),
    (_line("h_compact_offset", ts="2026-03-01T10:00:00+0100"), None, "h_compact_offset"),
    (" \t\r", "empty_line", None),
    ("\xa0", "malformed_json", None),  # a no-break space is not blank: DuckDB's trim() says it is
]


@pytest.mark.parametrize(
    "cases",
    [JSON_EDGES, FORBIDDEN_VALUES, HOSTILE],
    ids=["json_edges", "forbidden_values", "hostile"],
)
def test_edge_lines_get_the_same_outcome_on_every_engine(engine, cases):
    raw = [(D1, F1, n, line) for n, (line, _, _) in enumerate(cases, start=1)]
    with engine.persisting() as persist:
        result = clean_events(frame(engine, raw, RAW_EVENTS), D1, D1, persist)
        rows = rows_of(engine, result.quarantined) + rows_of(engine, result.cleaned)
    got = sorted((r["line_number"], r.get("reason"), r["event_id"]) for r in rows)
    assert got == [(n, reason, event_id) for n, (_, reason, event_id) in enumerate(cases, start=1)]


def test_a_line_that_is_not_utf8_is_quarantined_with_its_bytes_not_merged_with_another(
    engine, tmp_path
):
    from lakehouse.events.vocabulary import day_folder
    from lakehouse.tables.ingest import landed_lines

    folder = day_folder(tmp_path, D1)
    folder.mkdir(parents=True)
    undecodable = [
        _line("e_X").encode().replace(b"_X", b"\xff"),
        _line("e_X").encode().replace(b"_X", b"\xfe"),
    ]
    # A valid line whose id is the replacement character itself: what both of the others decode to.
    (folder / "events.jsonl").write_bytes(b"\n".join([*undecodable, _line("e\ufffd").encode()]))
    with engine.persisting() as persist:
        result = clean_events(
            engine.from_arrow(landed_lines(tmp_path, D1), RAW_EVENTS), D1, D1, persist
        )
        quarantined, cleaned = rows_of(engine, result.quarantined), rows_of(engine, result.cleaned)
    assert [(r["line_number"], r["reason"], r["raw_bytes"]) for r in quarantined] == [
        (1, "invalid_encoding", undecodable[0]),
        (2, "invalid_encoding", undecodable[1]),
    ]
    assert [(r["line_number"], r["event_id"]) for r in cleaned] == [(3, "e\ufffd")]
