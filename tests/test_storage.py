from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import CommitProperties

from lakehouse.tables.schemas import CLEANED_EVENTS, RAW_EVENTS, TableSchema
from lakehouse.tables.storage import (
    INPUTS_KEY,
    DataFile,
    DateRange,
    DeltaStore,
    StaleInputError,
    TableMovedError,
    _files_by_folder,
)


def _raw(day: date, lines: list[str]) -> pa.Table:
    n = len(lines)
    return pa.table(
        {
            "ingest_date": [day] * n,
            "source_file": ["f"] * n,
            "line_number": list(range(1, n + 1)),
            "raw_line": lines,
            "raw_bytes": [None] * n,
        },
        schema=RAW_EVENTS.arrow(),
    )


def test_predicate_only_from_dates_and_declared_partition_columns():
    assert DateRange("ingest_date", date(2026, 3, 1), date(2026, 3, 2)).predicate(RAW_EVENTS) == (
        "ingest_date >= '2026-03-01' AND ingest_date <= '2026-03-02'"
    )
    with pytest.raises(ValueError, match="not a partition column"):
        DateRange("raw_line", date(2026, 3, 1), date(2026, 3, 1)).predicate(RAW_EVENTS)
    with pytest.raises(ValueError, match="invalid date range"):
        DateRange("ingest_date", "2026-03-01' OR '1'='1", date(2026, 3, 1)).predicate(RAW_EVENTS)
    with pytest.raises(ValueError, match="invalid date range"):
        DateRange("ingest_date", date(2026, 3, 2), date(2026, 3, 1)).predicate(RAW_EVENTS)


def test_replacing_a_partition_leaves_the_others_and_reruns_are_idempotent(tmp_path):
    store = DeltaStore(str(tmp_path))
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    store.write_arrow(RAW_EVENTS, _raw(d1, ["a", "b"]), DateRange("ingest_date", d1, d1))
    store.write_arrow(RAW_EVENTS, _raw(d2, ["c"]), DateRange("ingest_date", d2, d2))
    for _ in range(3):
        version = store.write_arrow(
            RAW_EVENTS, _raw(d1, ["a2", "b2", "x"]), DateRange("ingest_date", d1, d1)
        )
    rows = sorted(
        (r["ingest_date"], r["raw_line"]) for r in store.read_arrow("raw_events").to_pylist()
    )
    assert rows == [(d1, "a2"), (d1, "b2"), (d1, "x"), (d2, "c")]
    assert version == 4 and store.row_count("raw_events") == 4
    assert sorted(r["raw_line"] for r in store.read_arrow("raw_events", version=1).to_pylist()) == [
        "a",
        "b",
        "c",
    ]


def test_each_commit_records_the_input_versions_it_was_computed_from(tmp_path):
    store = DeltaStore(str(tmp_path))
    d1 = date(2026, 3, 1)
    assert store.write_arrow(RAW_EVENTS, _raw(d1, ["a"]), inputs={"landing": 7}) == 0
    assert (
        store.write_arrow(RAW_EVENTS, _raw(d1, ["b"]), inputs={"cleaned_events": 3, "landing": 8})
        == 1
    )
    assert store.write_arrow(RAW_EVENTS, _raw(d1, ["c"])) == 2
    assert [store.commit_inputs("raw_events", v) for v in (0, 1, 2, 3)] == [
        {"landing": 7},
        {"cleaned_events": 3, "landing": 8},
        {},
        {},
    ]


def test_a_batch_that_violates_the_schema_is_not_committed(tmp_path):
    store = DeltaStore(str(tmp_path))
    d1 = date(2026, 3, 1)
    store.write_arrow(RAW_EVENTS, _raw(d1, ["a"]), DateRange("ingest_date", d1, d1))
    columns = {"ingest_date": [d1], "source_file": ["f"], "line_number": [1], "raw_line": ["b"]}
    missing_a_column = pa.table(columns)
    null_where_the_schema_forbids = pa.table(
        columns | {"source_file": [None], "raw_bytes": pa.nulls(1, pa.binary())}
    )
    with pytest.raises(KeyError, match="raw_bytes"):
        store.write_arrow(RAW_EVENTS, missing_a_column, DateRange("ingest_date", d1, d1))
    with pytest.raises(ValueError, match="source_file' with null values to non-nullable"):
        store.write_arrow(
            RAW_EVENTS, null_where_the_schema_forbids, DateRange("ingest_date", d1, d1)
        )
    assert store.version("raw_events") == 0


def test_tables_written_by_spark_and_by_deltalake_are_readable_by_both(spark, tmp_path):
    store = DeltaStore(str(tmp_path))
    d1 = date(2026, 3, 1)
    store.write_arrow(RAW_EVENTS, _raw(d1, ["a", "b"]), DateRange("ingest_date", d1, d1))
    assert sorted(r["raw_line"] for r in store.read_spark(spark, "raw_events").collect()) == [
        "a",
        "b",
    ]

    schema = TableSchema(
        "spark_written", "test", CLEANED_EVENTS.columns[:4], partition_by=("event_date",)
    )
    df = spark.createDataFrame(
        [("e1", "product_viewed", None, d1)],
        "event_id string, event_name string, event_ts timestamp, event_date date",
    )
    df = df.selectExpr(
        "event_id", "event_name", "timestamp'2026-03-01 10:00:00' as event_ts", "event_date"
    )
    assert store.write_spark(schema, df, inputs={"raw_events": 0}) == 0
    assert store.commit_inputs("spark_written", 0) == {"raw_events": 0}
    table = store.read_arrow("spark_written")
    assert table.schema.field("event_ts").type == pa.timestamp("us", tz="UTC")
    assert table.to_pylist()[0]["event_ts"].isoformat() == "2026-03-01T10:00:00+00:00"
    assert store.table("spark_written").protocol().min_reader_version == 1


def test_spark_rows_outside_the_range_they_replace_are_refused_and_nothing_is_committed(
    spark, tmp_path
):
    store = DeltaStore(str(tmp_path))
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    schema = TableSchema(
        "spark_written", "test", CLEANED_EVENTS.columns[:4], partition_by=("event_date",)
    )
    rows = spark.createDataFrame(
        [("e1", "product_viewed", d1), ("e2", "product_viewed", d2)],
        "event_id string, event_name string, event_date date",
    )
    rows = rows.selectExpr(
        "event_id", "event_name", "timestamp'2026-03-01 10:00:00' as event_ts", "event_date"
    )
    assert store.write_spark(schema, rows) == 0
    with pytest.raises(
        ValueError, match="event_date 2026-03-02 are outside the range 2026-03-01..2026-03-01"
    ):
        store.write_spark(schema, rows, DateRange("event_date", d1, d1))
    assert store.version("spark_written") == 0 and store.row_count("spark_written") == 2


def _rows(table: pa.Table) -> list[dict]:
    return sorted(
        table.cast(RAW_EVENTS.arrow()).to_pylist(), key=lambda r: (r["ingest_date"], r["raw_line"])
    )


def test_spark_reads_each_version_as_delta_rs_does_whichever_engine_wrote_its_files(
    spark, tmp_path
):
    store = DeltaStore(str(tmp_path))
    d1, d2, d3, d4 = (date(2026, 3, day) for day in range(1, 5))
    store.write_arrow(
        RAW_EVENTS, pa.concat_tables([_raw(d, [f"{d.day}a", f"{d.day}b"]) for d in (d1, d2, d3)])
    )  # files under the root
    for day, lines in ((d2, ["2x"]), (d3, ["3x", "3y", "3z"])):  # each in a Spark folder of its own
        store.write_spark(
            RAW_EVENTS,
            spark.createDataFrame(_raw(day, lines).to_pylist(), RAW_EVENTS.spark()),
            DateRange("ingest_date", day, day),
        )
    store.write_arrow(RAW_EVENTS, _raw(d1, []), DateRange("ingest_date", d1, d1))  # day 1 emptied
    store.write_arrow(
        RAW_EVENTS, _raw(d1, []), DateRange("ingest_date", d1, d3)
    )  # every file removed
    assert store.version("raw_events") == 4
    for version in range(5):
        assert (
            _files_by_folder(store.table("raw_events", version), store.uri("raw_events"))
            is not None
        )  # read as Parquet
        read = store.read_spark(spark, "raw_events", version)
        assert read.columns == list(RAW_EVENTS.column_names)
        assert _rows(read.toArrow()) == _rows(store.read_arrow("raw_events", version))
    assert [r["raw_line"] for r in _rows(store.read_spark(spark, "raw_events", 2).toArrow())] == [
        "1a",
        "1b",
        "2x",
        "3x",
        "3y",
        "3z",
    ]

    # A file whose directories do not spell its partition value: its value is the one in the log.
    (tmp_path / "raw_events" / "elsewhere").mkdir()
    pq.write_table(
        _raw(d4, ["4a"]).drop(["ingest_date"]),
        tmp_path / "raw_events" / "elsewhere" / "part.parquet",
    )
    stat = (tmp_path / "raw_events" / "elsewhere" / "part.parquet").stat()
    store.commit_files(
        RAW_EVENTS,
        [
            DataFile(
                "elsewhere/part.parquet",
                stat.st_size,
                1,
                int(stat.st_mtime * 1000),
                {"ingest_date": d4.isoformat()},
            )
        ],
        append=True,
    )
    assert (
        _files_by_folder(store.table("raw_events"), store.uri("raw_events")) is None
    )  # read by delta-spark
    assert (
        _rows(store.read_spark(spark, "raw_events").toArrow())
        == _rows(store.read_arrow("raw_events"))
        == _rows(_raw(d4, ["4a"]))
    )


def _another_writer_creates_the_table_first(monkeypatch, module, store, rows):
    """Patch `module`'s write_deltalake so that, the first time our writer calls it, another writer has
    just created the table with `rows`: the race between a writer's look at the table and its write."""
    from deltalake import write_deltalake

    raced = []

    def racing(table_or_uri, data, **kwargs):
        if not raced:
            raced.append(True)
            write_deltalake(store.uri("raw_events"), rows, partition_by=["ingest_date"])
        return write_deltalake(table_or_uri, data, **kwargs)

    monkeypatch.setattr(module, "write_deltalake", racing)


def test_a_first_write_never_replaces_a_table_another_writer_just_created(tmp_path, monkeypatch):
    import lakehouse.tables.storage as storage

    store = DeltaStore(str(tmp_path))
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    _another_writer_creates_the_table_first(monkeypatch, storage, store, _raw(d1, ["theirs"]))
    store.write_arrow(RAW_EVENTS, _raw(d2, ["ours"]), DateRange("ingest_date", d2, d2))
    assert sorted(store.read_arrow("raw_events").column("raw_line").to_pylist()) == [
        "ours",
        "theirs",
    ]


def test_the_dbt_writer_s_first_write_never_replaces_a_table_another_writer_just_created(
    tmp_path, monkeypatch
):
    import importlib.util
    from types import SimpleNamespace

    from lakehouse.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "delta_writer", REPO_ROOT / "dbt" / "plugins" / "delta_writer.py"
    )
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    monkeypatch.setenv("LAKEHOUSE_DELTA_ROOT", str(tmp_path))
    store = DeltaStore(str(tmp_path))
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    staged = tmp_path / "staged.parquet"
    pq.write_table(_raw(d2, ["ours"]), staged)
    _another_writer_creates_the_table_first(monkeypatch, writer, store, _raw(d1, ["theirs"]))
    config = {
        "partition_column": "ingest_date",
        "replace_start": d2.isoformat(),
        "replace_end": d2.isoformat(),
        "cleaned_events_version": "3",
    }
    target = SimpleNamespace(
        location=SimpleNamespace(format="parquet", path=str(staged)),
        config=config,
        relation=SimpleNamespace(identifier="raw_events"),
    )
    writer.Plugin.store(SimpleNamespace(), target)
    assert sorted(store.read_arrow("raw_events").column("raw_line").to_pylist()) == [
        "ours",
        "theirs",
    ]


def test_a_replacement_computed_from_an_older_input_version_is_refused(tmp_path):
    """A partition computed from raw v5 that commits after one computed from raw v6 must not replace it."""
    store = DeltaStore(str(tmp_path))
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    store.write_arrow(
        RAW_EVENTS, _raw(d1, ["from v6"]), DateRange("ingest_date", d1, d2), {"upstream": 6}
    )
    with pytest.raises(
        StaleInputError,
        match=r"2026-03-01\.\.2026-03-01 holds rows computed from upstream v6 \(commit v0\), newer than v5",
    ):
        store.write_arrow(
            RAW_EVENTS, _raw(d1, ["from v5"]), DateRange("ingest_date", d1, d1), {"upstream": 5}
        )
    assert store.version("raw_events") == 0
    # Equal or newer inputs replace it; a whole-table write is judged by the newest write before it.
    store.write_arrow(
        RAW_EVENTS, _raw(d1, ["from v6 again"]), DateRange("ingest_date", d1, d1), {"upstream": 6}
    )
    store.write_arrow(
        RAW_EVENTS, _raw(d2, ["from v7"]), DateRange("ingest_date", d2, d2), {"upstream": 7}
    )
    with pytest.raises(StaleInputError):
        store.write_arrow(RAW_EVENTS, _raw(d1, ["whole, from v6"]), inputs={"upstream": 6})
    assert sorted(store.read_arrow("raw_events").column("raw_line").to_pylist()) == [
        "from v6 again",
        "from v7",
    ]


def test_a_read_modify_write_is_refused_only_when_its_own_range_changed(tmp_path):
    store = DeltaStore(str(tmp_path))
    d1, d2 = date(2026, 3, 1), date(2026, 3, 2)
    store.write_arrow(RAW_EVENTS, _raw(d1, ["a"]), DateRange("ingest_date", d1, d1))
    read = store.version("raw_events")
    store.write_arrow(RAW_EVENTS, _raw(d2, ["other day"]), append=True)
    store.write_arrow(
        RAW_EVENTS, _raw(d1, ["a", "b"]), DateRange("ingest_date", d1, d1), read_version=read
    )  # d1 untouched since
    with pytest.raises(TableMovedError, match="2026-03-01 changed after v1"):
        store.write_arrow(
            RAW_EVENTS,
            _raw(d1, ["a", "c"]),
            DateRange("ingest_date", d1, d1),
            read_version=read + 1,
        )
    assert sorted(store.read_arrow("raw_events").column("raw_line").to_pylist()) == [
        "a",
        "b",
        "other day",
    ]


@pytest.mark.parametrize("created_by_the_store", [True, False])
def test_the_log_a_lookup_walks_survives_checkpoints_of_an_aged_table(
    tmp_path, created_by_the_store
):
    """Checkpoints delete log entries older than the log retention unless the table says not to; every table
    the store creates says so, and an older table is given the property at its next write."""
    import os
    import time

    from deltalake import write_deltalake

    store = DeltaStore(str(tmp_path))
    d1 = date(2026, 3, 1)
    first = _raw(d1, ["first"])
    if created_by_the_store:
        store.write_arrow(RAW_EVENTS, first, DateRange("ingest_date", d1, d1), {"upstream": 1})
    else:  # as the previous version created it
        write_deltalake(
            store.uri("raw_events"),
            first,
            partition_by=["ingest_date"],
            commit_properties=CommitProperties(custom_metadata={INPUTS_KEY: '{"upstream": 1}'}),
        )
        store.write_arrow(RAW_EVENTS, first, DateRange("ingest_date", d1, d1), {"upstream": 2})
    store.table("raw_events").alter.set_table_properties({"delta.checkpointInterval": "2"})
    store.table("raw_events").create_checkpoint()
    aged = time.time() - 90 * 86400
    for entry in (tmp_path / "raw_events" / "_delta_log").iterdir():
        os.utime(entry, (aged, aged))
    for n in range(
        4
    ):  # checkpoints every 2 commits, and cleans the log up after each unless told not to
        store.write_arrow(RAW_EVENTS, first, DateRange("ingest_date", d1, d1), {"upstream": 3 + n})
    assert (tmp_path / "raw_events" / "_delta_log" / f"{0:020}.json").exists()
    assert [info["version"] for info in store.history("raw_events")][-1] == 0
    assert store.commit_inputs("raw_events", 0) == {"upstream": 1}
