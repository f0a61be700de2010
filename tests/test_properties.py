"""Property-based tests: adversarial input never crashes ingestion or cleaning, and every line is accounted for."""

import json
import re
from datetime import date, datetime

from conftest import frame, rows_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.engines import engine_named
from lakehouse.engines.api import MAX_NUMBER_CHARS
from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.ingest import landed_lines
from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE, RAW_EVENTS
from lakehouse.transforms.cleaning import MAX_CONTAINERS, clean_events

DAY = date(2026, 3, 1)
line_text = st.text(
    alphabet=st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=80
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(line_text, max_size=30), bom=st.booleans(), trailing_newline=st.booleans())
def test_ingestion_keeps_every_line_verbatim(tmp_path, lines, bom, trailing_newline):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True, exist_ok=True)
    text = (
        ("\ufeff" if bom else "") + "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    )
    (folder / "events.jsonl").write_text(text, encoding="utf-8")
    rows = landed_lines(tmp_path, DAY).to_pylist()
    expected = text.split("\n")
    if expected[-1] == "":
        expected.pop()
    assert [r["raw_line"] for r in rows] == expected
    assert [r["line_number"] for r in rows] == list(range(1, len(expected) + 1))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    gzipped=st.booleans(),
)
def test_ingestion_keeps_every_byte_of_any_encoding(tmp_path, lines, gzipped):
    import gzip
    import shutil

    shutil.rmtree(tmp_path / "date=2026-03-01", ignore_errors=True)
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    data = b"\n".join(lines) + (b"\n" if lines else b"")
    (folder / ("events.jsonl.gz" if gzipped else "events.jsonl")).write_bytes(
        gzip.compress(data) if gzipped else data
    )
    rows = landed_lines(tmp_path, DAY).to_pylist()
    assert [
        r["raw_bytes"] if r["raw_bytes"] is not None else r["raw_line"].encode() for r in rows
    ] == lines


# Text that reads as a number on one engine and not another, or as a number nobody should sum.
numeric_text = st.one_of(
    st.floats().map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e999",
            "-0.0",
            "2.5",
            "2.0",
            "0x10",
            " 7 ",
            "1_000",
            "+3",
            ".5",
            "5.",
            "",
        ]
    ),
)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    numeric_text,
)
timestamps = st.one_of(
    st.datetimes(min_value=datetime(2026, 2, 1), max_value=datetime(2026, 3, 5)).map(
        lambda d: d.isoformat() + "Z"
    ),
    json_scalar,
)
events = st.fixed_dictionaries(
    {
        "event_id": st.one_of(st.sampled_from(["e1", "e2", "e3"]), json_scalar),
        "event_name": st.one_of(
            st.sampled_from(
                ["product_viewed", "cart_item_added", "purchase_completed", "user_logged_in"]
            ),
            json_scalar,
        ),
        "timestamp": timestamps,
        "sent_at": timestamps,
        "received_at": timestamps,
        "user_id": st.one_of(st.sampled_from(["usr_1", "usr_2"]), json_scalar),
        "anonymous_id": st.one_of(st.sampled_from(["anon_1", "anon_2"]), json_scalar),
        "platform": st.one_of(st.sampled_from(["ios", "web", "windows"]), json_scalar),
        "properties": st.dictionaries(
            st.sampled_from(
                [
                    "price_usd",
                    "price",
                    "currency",
                    "quantity",
                    "revenue_usd",
                    "item_category",
                    "experiment_variant",
                ]
            ),
            st.one_of(json_scalar, st.sampled_from(["USD", "EUR", "A", "B"])),
        ),
    }
)
# Lines no generator writes: raw control characters, deep nesting, CR line ends, unicode escapes.
hostile_lines = st.one_of(
    st.text(
        alphabet=st.characters(
            blacklist_characters="\n", blacklist_categories=("Cs",), max_codepoint=0x1F
        ),
        max_size=10,
    ),
    st.integers(1, 800).map(lambda n: '{"event_id": "deep", "x": ' + "[" * n + "]" * n + "}"),
    events.map(lambda e: json.dumps(e, ensure_ascii=False) + "\r"),
    events.map(lambda e: json.dumps(e).replace('"platform"', '"platform\\u0000"')),
)

# Strict JSON (RFC 8259) and what the engines' readers also take. A generated event gets one more
# member, spelt with these: most spellings are what strict JSON forbids and one reader or another
# accepts (Jackson's JsonReadFeatures, yyjson's flags, Python's json), a few are strict JSON at its edges.
lenient_keys = st.sampled_from(
    [
        '"extra"',
        '""',
        "extra",
        "'extra'",
        '"event_id"',
        '"\\u0065vent_id"',
        '"price"',
        '"\\ud800"',
        '"a\x01"',
    ]
)
lenient_values = st.sampled_from(
    [
        "NaN",
        "-NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "+Infinity",
        "inf",
        "-Inf",
        "INF",
        "infinity",  # non-numeric numbers
        "01",
        "-01",
        "00",
        "+1",
        ".5",
        "-.5",
        "5.",
        "5.e3",
        "1e",
        "1e+",
        "-",
        "0x10",
        "1_000",  # numbers
        "-0",
        "-0.0e-0",
        "1E+400",
        "1" * MAX_NUMBER_CHARS,
        "-" + "1" * (MAX_NUMBER_CHARS - 1),
        "1" * (MAX_NUMBER_CHARS + 1),
        "-" + "1" * MAX_NUMBER_CHARS,
        "0." + "1" * (MAX_NUMBER_CHARS - 1),
        "0." + "1" * MAX_NUMBER_CHARS,
        "1e" + "1" * (MAX_NUMBER_CHARS - 1),
        "1.5e" + "1" * (MAX_NUMBER_CHARS - 4),
        '"' + "1" * (MAX_NUMBER_CHARS + 1) + '"',  # long numbers
        "'x'",
        '"\\q"',
        '"\\\'"',
        '"\\x41"',
        '"\\u00e"',
        '"\\U00e9"',
        '"\\0"',
        '"\\v"',  # quotes and escapes
        '"\\ud800"',
        '"\\udc00"',
        '"\\ud800\\u0041"',
        '"\\ude00\\ud83d"',
        '"\\ud83d\\ude00"',
        '"\\u0000\\/"',  # surrogates
        '"x\x01y"',
        '"x\ty"',
        '"\x00"',
        '"\x7f\u2028"',  # raw characters in strings
        "[1,]",
        "[1 , ]",
        '{"a":1,}',
        "[1,,2]",
        "[,1]",
        "[]",
        "{}",
        '{"a":[{}]}',  # commas
        "True",
        "TRUE",
        "Null",
        "nul",
        "undefined",
        "None",
        "truex",
        "1x",  # literals
        "1/*c*/",
        "1//c",
        "1#c",  # comments
    ]
)
# Whitespace strict JSON allows (space, tab, CR) and other kinds: \f, \v, NUL, U+00A0, U+FEFF, U+2028.
lenient_space = st.sampled_from(
    ["", " ", "\t", "\r", "\f", "\v", "\x00", "\u00a0", "\ufeff", "\u2028", "\x1e"]
)


@st.composite
def lenient_lines(draw) -> str:
    """A generated event with one more member, in its top-level object or in its properties, spelt
    strictly but for one part."""
    event = draw(events)
    part = draw(st.sampled_from(["key", "value", "space", "comma", "after"]))
    key = draw(lenient_keys) if part == "key" else '"extra"'
    value = draw(lenient_values) if part == "value" else "1"
    space = draw(lenient_space) if part == "space" else ""
    member = f"{space}{key}{space}:{space}{value}{space}" + ("," if part == "comma" else "")

    def with_member(obj: dict) -> str:
        return "{" + ", ".join(text for text in (json.dumps(obj)[1:-1], member) if text) + "}"

    if draw(st.booleans()):
        properties = with_member(event.pop("properties"))
        line = json.dumps(event)[:-1] + ', "properties": ' + properties + "}"
    else:
        line = with_member(event)
    return line + (
        draw(
            st.sampled_from([" \r", "\x00", "\u00a0", "\ufeff", " x", "}", "]", '{"b":2}', "/*c*/"])
        )
        if part == "after"
        else ""
    )


raw_lines = st.one_of(
    events.map(json.dumps),
    events.map(lambda e: json.dumps(e)[: len(json.dumps(e)) // 2]),
    line_text,
    hostile_lines,
    lenient_lines(),
)


class _Object(dict):
    repeats_a_key = False


def _object(pairs: list) -> _Object:
    read = _Object(pairs)
    read.repeats_a_key = len(read) < len(pairs)
    return read


def _not_json(text: str):
    raise ValueError(f"{text} is not a JSON number")


def _strings(value):
    """Every string in a parsed value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def is_malformed_json(line: str) -> bool:
    """The cleaning's malformed_json rule, worked out here on its own: the reference both engines must equal.

    A line (less a byte-order mark) that is not blank is malformed unless it is exactly one strict JSON
    (RFC 8259) object, its top-level and properties objects repeat no key, it has at most
    MAX_CONTAINERS '{' or '[' and no run of more than MAX_NUMBER_CHARS of "0-9.eE+-". Python's json
    module reads RFC 8259's grammar, whitespace included, and two extensions, refused here: NaN and
    (-)Infinity, and lone surrogate escapes such as "\\ud800" (which no UTF-8 text can hold).
    """
    text = line.removeprefix("\ufeff")
    if re.fullmatch(r"[ \t\n\r\f\v]*", text):
        return False  # empty_line
    if text.count("{") + text.count("[") > MAX_CONTAINERS or re.search(
        f"[-+.eE0-9]{{{MAX_NUMBER_CHARS + 1}}}", text
    ):
        return True
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_not_json)
    except ValueError:  # json.JSONDecodeError included
        return True
    if not isinstance(value, _Object) or value.repeats_a_key:
        return True
    if isinstance(value.get("properties"), _Object) and value["properties"].repeats_a_key:
        return True
    return any(re.search("[\ud800-\udfff]", text) for text in _strings(value))


# Lines and whether they are malformed_json, decided by hand from RFC 8259 and the cleaning's limits.
JSON_SHAPES = {
    '{"a":1}': False,
    ' \t{"a" : [1, -0, -0.0e-0, 1E+400, {}], "b":"\\u00e9\\ud83d\\ude00\\/\x7f\u2028"} \r': False,
    '{"a":'
    + "9" * MAX_NUMBER_CHARS
    + ', "b":-'
    + "9" * (MAX_NUMBER_CHARS - 1)
    + ', "c":0.'
    + "9" * (MAX_NUMBER_CHARS - 2)
    + "}": False,
    '{"a":' + "9" * (MAX_NUMBER_CHARS + 1) + "}": True,  # past Jackson's limit
    '{"a":-'
    + "9" * MAX_NUMBER_CHARS
    + "}": True,  # within it, but past the line's limit on number characters
    '{"a":0.'
    + "9" * (MAX_NUMBER_CHARS - 1)
    + "}": True,  # Jackson reads it: its count of these digits is off by one
    '{"a":1e' + "9" * MAX_NUMBER_CHARS + "}": True,
    '{"a":"'
    + "9" * (MAX_NUMBER_CHARS + 1)
    + '"}': True,  # the limit counts characters, in strings too
    '{"a":1,}': True,  # trailing commas: DuckDB reads them
    '{"a":[1,]}': True,
    '{"properties":{"price":1 , }}': True,
    '{"a":"x,}"}': False,
    '{"a":[1,,2]}': True,
    '{"a":NaN}': True,
    '{"a":-Infinity}': True,
    '{"a":inf}': True,
    '{"a":"NaN","b":"-inf"}': False,
    '{"a":01}': True,
    '{"a":+1}': True,
    '{"a":.5}': True,
    '{"a":5.}': True,
    '{"a":0x10}': True,
    "{'a':1}": True,
    "{a:1}": True,
    '{"a":1/*c*/}': True,
    '{"a":1}//c': True,
    '{"a":1}#c': True,
    '{"a":"\\q"}': True,
    '{"a":"\\ud800"}': True,  # a lone surrogate
    '{"a":"\\ude00\\ud83d"}': True,
    '{"\\udc00":1}': True,
    '{"a":"x\x01y"}': True,
    '{"a":"x\ty"}': True,
    '{\f"a":1}': True,
    '{\v"a":1}': True,
    '{\u00a0"a":1}': True,
    '{"a":1}\x00': True,
    '{"a":1}\ufeff': True,
    '\ufeff{"a":1}': False,  # a leading byte-order mark is removed first
    '{"a":True}': True,
    '{"a":1} x': True,
    '{"a":1}{"b":2}': True,
    "[{}]": True,
    '{"a":1,"a":2}': True,
    '{"a":1,"\\u0061":2}': True,
    '{"properties":{"price":1,"price":2}}': True,
    '{"x":{"a":1,"a":2}}': False,  # only the top-level and properties objects are read
    '{"a":' + "[" * MAX_CONTAINERS + "]" * MAX_CONTAINERS + "}": True,
    " \t": False,  # empty_line
}


def test_the_reference_decides_malformed_json_as_worked_out_by_hand():
    assert {line: is_malformed_json(line) for line in JSON_SHAPES} == JSON_SHAPES


def malformed_lines(quarantined: list[dict]) -> set[int]:
    return {row["line_number"] for row in quarantined if row["reason"] == "malformed_json"}


def test_malformed_json_is_strict_json_on_the_local_engine():
    engine = engine_named("duckdb")
    lines = list(JSON_SHAPES)
    with engine.persisting() as persist:
        result = clean_events(
            frame(engine, [(DAY, "f", i + 1, line) for i, line in enumerate(lines)], RAW_EVENTS),
            date(2000, 1, 1),
            date(2100, 1, 1),
            persist,
        )
        assert malformed_lines(rows_of(engine, result.quarantined)) == {
            i + 1 for i, line in enumerate(lines) if JSON_SHAPES[line]
        }


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lines=st.lists(raw_lines, min_size=1, max_size=25))
def test_cleaning_accounts_for_every_line_and_yields_valid_batches(lines):
    # On the local engine; Spark's outputs on such lines are held to the same accounting, and to
    # equality with these, by tests/test_engines_agree.py.
    engine = engine_named("duckdb")
    rows = [(DAY, "f", i + 1, line) for i, line in enumerate(lines)]
    with engine.persisting() as persist:
        # A range wide enough that every line, whatever its times, is attributed inside it.
        result = clean_events(
            frame(engine, rows, RAW_EVENTS), date(2000, 1, 1), date(2100, 1, 1), persist
        )
        cleaned, quarantined = rows_of(engine, result.cleaned), rows_of(engine, result.quarantined)
        keys = [r["line_number"] for r in cleaned] + [r["line_number"] for r in quarantined]
        assert sorted(keys) == list(range(1, len(lines) + 1))
        assert result.counts()["outside_range"] == 0
        assert len({r["event_id"] for r in cleaned}) == len(cleaned)
        assert malformed_lines(quarantined) == {
            i + 1 for i, line in enumerate(lines) if is_malformed_json(line)
        }
        for schema, df in ((CLEANED_EVENTS, result.cleaned), (QUARANTINE, result.quarantined)):
            report = engine.batch(df).validate(schema)
            assert report.passed, report.failures
