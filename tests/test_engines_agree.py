"""Differential: every transformation gives the same table on DuckDB (through SQLFrame) as on Spark.

Same rows, same column types, same nulls, same quarantine reasons, on the hand-worked fixtures and on
hypothesis-generated raw lines (malformed ones included); and malformed_json on both is the strict JSON
of the reference in tests/test_properties.py. Spark is the oracle the local engine must
match: the cluster profile runs the same code there. The whole graph on a generated window, Spark on
the cluster against DuckDB locally, is compared table by table in tests/test_cluster_lakehouse.py.
"""

from datetime import date

import pyarrow as pa
import pytest
from conftest import frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cleaning import D1, D2, RAW
from test_properties import JSON_SHAPES, is_malformed_json, malformed_lines, raw_lines
from test_user_activity import EVENTS, LAST_DAY, SESSIONS

from lakehouse.engines import engine_named
from lakehouse.tables.schemas import CLEANED_EVENTS, RAW_EVENTS
from lakehouse.transforms.cleaning import clean_events
from lakehouse.transforms.user_activity import (
    category_activity_features,
    purchase_labels,
    user_activity_features,
)

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def engines(spark):
    return engine_named("duckdb"), engine_named("spark")


def _canonical(table: pa.Table) -> tuple[list[tuple[str, str]], list[tuple]]:
    """Column names and types, and the rows in a fixed order (engines return rows in any order)."""
    columns = [(f.name, str(f.type)) for f in table.schema]
    rows = [tuple(row.values()) for row in table.to_pylist()]
    return columns, sorted(rows, key=repr)


def _outputs(engine, transform, rows, schema, *args) -> dict[str, pa.Table]:
    """Every table a transformation produces, as Arrow."""
    with engine.persisting() as persist:
        source = frame(engine, rows, schema)
        if transform is clean_events:
            result = clean_events(source, *args, persist)
            return {
                "cleaned": engine.to_arrow(result.cleaned),
                "quarantined": engine.to_arrow(result.quarantined),
                "counts": pa.table(
                    {"outcome": list(result.counts()), "rows": list(result.counts().values())}
                ),
            }
        return {transform.__name__: engine.to_arrow(transform(source, *args))}


def assert_engines_agree(engines, transform, rows, schema, *args) -> dict[str, pa.Table]:
    """Spark's tables, once shown equal to DuckDB's."""
    duckdb, spark = (_outputs(engine, transform, rows, schema, *args) for engine in engines)
    assert duckdb.keys() == spark.keys()
    for name in duckdb:
        ours, oracle = _canonical(duckdb[name]), _canonical(spark[name])
        assert ours[0] == oracle[0], f"{name}: column types differ"
        assert ours[1] == oracle[1], f"{name}: rows differ"
    return spark


def test_cleaning_agrees_on_the_hand_worked_lines(engines):
    assert_engines_agree(engines, clean_events, RAW, RAW_EVENTS, D1, D2)


@pytest.mark.parametrize(
    "transform", [user_activity_features, category_activity_features, purchase_labels]
)
@pytest.mark.parametrize("events", [EVENTS, SESSIONS], ids=["events", "sessions"])
def test_features_and_labels_agree_on_the_hand_worked_events(engines, transform, events):
    assert_engines_agree(engines, transform, events, CLEANED_EVENTS, LAST_DAY)


# Each example is a Spark job of a few seconds whatever its size: a few large batches of lines cover
# as many lines (and more cross-line duplicates) as many small ones, in a third of the time.
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(lines=st.lists(raw_lines, min_size=1, max_size=100))
def test_cleaning_agrees_on_generated_lines_malformed_ones_included(engines, lines):
    rows = [(date(2026, 3, 1), "f", i + 1, line) for i, line in enumerate(lines)]
    spark = assert_engines_agree(
        engines, clean_events, rows, RAW_EVENTS, date(2000, 1, 1), date(2100, 1, 1)
    )
    # test_properties.py holds the local engine to this accounting; Spark is held to it here.
    cleaned, quarantined = spark["cleaned"], spark["quarantined"]
    assert sorted(
        cleaned["line_number"].to_pylist() + quarantined["line_number"].to_pylist()
    ) == list(range(1, len(lines) + 1))
    assert dict(zip(*spark["counts"].to_pydict().values()))["outside_range"] == 0
    assert len(set(cleaned["event_id"].to_pylist())) == len(cleaned)
    assert malformed_lines(quarantined.to_pylist()) == {
        i + 1 for i, line in enumerate(lines) if is_malformed_json(line)
    }


def test_both_engines_read_json_as_strictly_as_the_reference(engines):
    lines = list(JSON_SHAPES)
    rows = [(date(2026, 3, 1), "f", i + 1, line) for i, line in enumerate(lines)]
    spark = assert_engines_agree(
        engines, clean_events, rows, RAW_EVENTS, date(2000, 1, 1), date(2100, 1, 1)
    )
    assert malformed_lines(spark["quarantined"].to_pylist()) == {
        i + 1 for i, line in enumerate(lines) if JSON_SHAPES[line]
    }
