"""Property-based tests: adversarial input never crashes ingestion or cleaning, and every line is accounted for."""

import json
from datetime import date, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.engines import engine_named
from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.ingest import landed_lines
from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE, RAW_EVENTS
from lakehouse.transforms.cleaning import clean_events
from conftest import frame, rows_of

DAY = date(2026, 3, 1)
line_text = st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_text, max_size=30), bom=st.booleans(), trailing_newline=st.booleans())
def test_ingestion_keeps_every_line_verbatim(tmp_path, lines, bom, trailing_newline):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True, exist_ok=True)
    text = ("\ufeff" if bom else "") + "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    (folder / "events.jsonl").write_text(text, encoding="utf-8")
    rows = landed_lines(tmp_path, DAY).to_pylist()
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    assert [r["raw_line"] for r in rows] == expected
    assert [r["line_number"] for r in rows] == list(range(1, len(expected) + 1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=20), gzipped=st.booleans())
def test_ingestion_keeps_every_byte_of_any_encoding(tmp_path, lines, gzipped):
    import gzip
    import shutil

    shutil.rmtree(tmp_path / "date=2026-03-01", ignore_errors=True)
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    (folder / ("events.jsonl.gz" if gzipped else "events.jsonl")).write_bytes(gzip.compress(data) if gzipped else data)
    rows = landed_lines(tmp_path, DAY).to_pylist()
    assert [r["raw_bytes"] if r["raw_bytes"] is not None else r["raw_line"].encode() for r in rows] == lines


# Text that reads as a number on one engine and not another, or as a number nobody should sum.
numeric_text = st.one_of(
    st.floats().map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0.0", "2.5", "2.0", "0x10", " 7 ", "1_000", "+3", ".5", "5.", ""]),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12), numeric_text
)
timestamps = st.one_of(
    st.datetimes(min_value=datetime(2026, 2, 1), max_value=datetime(2026, 3, 5)).map(lambda d: d.isoformat() + "Z"),
    json_scalar,
)
events = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.sampled_from(["e1", "e2", "e3"]), json_scalar),
        "event_name": st.one_of(st.sampled_from(["product_viewed", "cart_item_added", "purchase_completed", "user_logged_in"]), json_scalar),
        "timestamp": timestamps,
        "sent_at": timestamps,
        "received_at": timestamps,
        "user_id": st.one_of(st.sampled_from(["usr_1", "usr_2"]), json_scalar),
        "anonymous_id": st.one_of(st.sampled_from(["anon_1", "anon_2"]), json_scalar),
        "platform": st.one_of(st.sampled_from(["ios", "web", "windows"]), json_scalar),
        "properties": st.dictionaries(
            st.sampled_from(["price_usd", "price", "currency", "quantity", "revenue_usd", "item_category", "experiment_variant"]),
            st.one_of(json_scalar, st.sampled_from(["USD", "EUR", "A", "B"])),
        ),
    }
)
# Lines no generator writes: raw control characters, deep nesting, CR line ends, unicode escapes.
hostile_lines = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",), max_codepoint=0x1F),  max_size=10),
    st.integers(1, 800).map(lambda n: '{"event_id": "deep", "x": ' + "[" * n + "]" * n + "}"),
    events.map(lambda e: json.dumps(e, ensure_ascii=False) + "\r"),
    events.map(lambda e: json.dumps(e).replace('"platform"', '"platform\\u0000"')),
)
raw_lines = st.one_of(events.map(json.dumps), events.map(lambda e: json.dumps(e)[: len(json.dumps(e)) // 2]), line_text, hostile_lines)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(raw_lines, min_size=1, max_size=25))
def test_cleaning_accounts_for_every_line_and_yields_valid_batches(lines):
    # On the local engine; Spark's outputs on such lines are held to the same accounting, and to
    # equality with these, by tests/test_engines_agree.py.
    engine = engine_named("duckdb")
    rows = [(DAY, "f", i + 1, line) for i, line in enumerate(lines)]
    with engine.persisting() as persist:
        # A range wide enough that every line, whatever its times, is attributed inside it.
        result = clean_events(frame(engine, rows, RAW_EVENTS), date(2000, 1, 1), date(2100, 1, 1), persist)
        cleaned, quarantined = rows_of(engine, result.cleaned), rows_of(engine, result.quarantined)
        keys = [r["line_number"] for r in cleaned] + [r["line_number"] for r in quarantined]
        assert sorted(keys) == list(range(1, len(lines) + 1))
        assert result.counts()["outside_range"] == 0
        assert len({r["event_id"] for r in cleaned}) == len(cleaned)
        for schema, df in ((CLEANED_EVENTS, result.cleaned), (QUARANTINE, result.quarantined)):
            report = engine.batch(df).validate(schema)
            assert report.passed, report.failures
