"""The cleaned/quarantine pair, step by step, on real Delta tables: readers see published batches only."""

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from lakehouse.tables.publication import (
    ABANDONED_AFTER,
    batch_began,
    new_batch_id,
    publication,
    publish_pair,
    published_batches,
    published_quarantine,
    settle_quarantine,
)
from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE
from lakehouse.tables.storage import DateRange, DeltaStore, StaleInputError

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def _quarantine(batch, lines):
    """Quarantine rows of `batch`: (event_date, line_number) each."""
    rows = [
        {
            "event_date": day,
            "ingest_date": day,
            "source_file": "f",
            "line_number": n,
            "raw_line": "x",
            "raw_bytes": None,
            "reason": "empty_line",
            "event_id": None,
            "batch_id": batch,
        }
        for day, n in lines
    ]
    return pa.Table.from_pylist(rows, schema=QUARANTINE.arrow())


def _cleaned(events):
    ts = datetime(2026, 3, 1, tzinfo=timezone.utc)
    rows = [
        {c: None for c in CLEANED_EVENTS.column_names}
        | {
            "event_id": eid,
            "event_name": "app_opened",
            "event_ts": ts,
            "event_date": day,
            "device_ts": ts,
            "received_at": ts,
            "user_id": "u",
            "identity": "logged_in",
            "platform": "ios",
            "ingest_date": day,
            "source_file": "f",
            "line_number": 1,
        }
        for eid, day in events
    ]
    return pa.Table.from_pylist(rows, schema=CLEANED_EVENTS.arrow())


def _publish(store, batch, start, end, quarantine_lines, events, crash_after_quarantine=False):
    """One cleaning run's commits, as assets/cleaned.py makes them."""
    store.write_arrow(QUARANTINE, _quarantine(batch, quarantine_lines), append=True)
    if crash_after_quarantine:
        return
    store.write_arrow(
        CLEANED_EVENTS,
        _cleaned(events),
        DateRange("event_date", start, end),
        properties=publication(batch, start, end),
    )
    settle_quarantine(store, start, end)


def _seen(store):
    return sorted(
        (r["event_date"], r["line_number"], r["batch_id"])
        for r in published_quarantine(store, D1, D2).to_pylist()
    )


def test_readers_see_the_published_batch_of_each_date_and_never_a_half_published_one(tmp_path):
    store = DeltaStore(str(tmp_path))
    _publish(store, "a", D1, D2, [(D1, 1), (D2, 2)], [("e1", D1)])
    assert _seen(store) == [(D1, 1, "a"), (D2, 2, "a")]

    # A run of the same range dies after its quarantine commit: readers still see batch a.
    _publish(store, "b", D1, D2, [(D1, 1), (D1, 3), (D2, 2)], [], crash_after_quarantine=True)
    assert store.row_count(QUARANTINE.name) == 5
    assert _seen(store) == [(D1, 1, "a"), (D2, 2, "a")]

    # A run of D2 alone publishes c there; D1 stays a's; the dead run's rows are gone from D2 only.
    _publish(store, "c", D2, D2, [(D2, 4)], [("e2", D2)])
    assert published_batches(store, [D1, D2]) == {D1: "a", D2: "c"}
    assert _seen(store) == [(D1, 1, "a"), (D2, 4, "c")]
    # As of the first publication, D2 was a's.
    assert published_batches(store, [D1, D2], version=0) == {D1: "a", D2: "a"}

    # The rerun of the whole range removes what the dead run left.
    _publish(store, "d", D1, D2, [(D1, 1)], [("e1", D1), ("e2", D2)])
    assert _seen(store) == [(D1, 1, "d")]
    assert store.row_count(QUARANTINE.name) == 1


def test_a_run_reads_back_its_own_publication_after_a_later_run_took_over_its_dates(tmp_path):
    store = DeltaStore(str(tmp_path))
    _publish(store, "a", D1, D2, [(D1, 1), (D2, 2)], [("e1", D1)])
    a_cleaned, a_quarantine = store.version(CLEANED_EVENTS.name), 0
    # Run b publishes D2 before run a has read its publication back, and settles: a's D2 row goes.
    _publish(store, "b", D2, D2, [(D2, 7)], [("e2", D2)])
    assert _seen(store) == [(D1, 1, "a"), (D2, 7, "b")]

    def as_published_by_a(**kwargs):
        return sorted(
            (r["event_date"], r["line_number"], r["batch_id"])
            for r in published_quarantine(store, D1, D2, a_cleaned, **kwargs).to_pylist()
        )

    # At the quarantine version a's own commit made, a's pair is whole; the newest version lost D2.
    assert as_published_by_a(quarantine_version=a_quarantine) == [(D1, 1, "a"), (D2, 2, "a")]
    assert as_published_by_a() == [(D1, 1, "a")]


def test_quarantine_rows_from_before_publications_stay_visible_until_a_date_is_published(tmp_path):
    store = DeltaStore(str(tmp_path))
    from deltalake import write_deltalake

    legacy = _quarantine("-", [(D1, 1), (D2, 2)]).drop_columns(
        ["batch_id"]
    )  # the table as written before batch ids
    write_deltalake(store.uri(QUARANTINE.name), legacy, partition_by=["event_date"])
    store.write_arrow(CLEANED_EVENTS, _cleaned([("e1", D1)]))  # no publication recorded
    assert _seen(store) == [(D1, 1, None), (D2, 2, None)]
    _publish(store, "a", D2, D2, [(D2, 5)], [])
    assert _seen(store) == [(D1, 1, None), (D2, 5, "a")]


def _append(store, batch, lines):
    store.write_arrow(QUARANTINE, _quarantine(batch, lines), append=True)


def _publish_cleaned(store, batch, start, end, events, inputs=None):
    store.write_arrow(
        CLEANED_EVENTS,
        _cleaned(events),
        DateRange("event_date", start, end),
        inputs,
        properties=publication(batch, start, end),
    )


D3 = date(2026, 3, 3)


def test_two_runs_interleaved_on_overlapping_ranges_lose_no_quarantine_row(tmp_path):
    """A appends, B appends, A publishes, A settles, B publishes, B settles: the dates both cover end with B's rows."""
    store = DeltaStore(str(tmp_path))
    a, b = new_batch_id(), new_batch_id()
    _append(store, a, [(D1, 1), (D2, 2)])  # A: D1..D2
    _append(store, b, [(D2, 3), (D3, 4)])  # B: D2..D3, from the same or a newer raw version
    _publish_cleaned(store, a, D1, D2, [("e1", D1)])
    settle_quarantine(store, D1, D2)
    assert sorted(
        (r["event_date"], r["batch_id"]) for r in store.read_arrow(QUARANTINE.name).to_pylist()
    ) == sorted([(D1, a), (D2, a), (D2, b), (D3, b)])
    _publish_cleaned(store, b, D2, D3, [("e3", D3)])
    assert sorted(published_quarantine(store, D1, D3).column("line_number").to_pylist()) == [
        1,
        3,
        4,
    ]
    settle_quarantine(store, D2, D3)
    # Worked out by hand: D1 is A's, D2 and D3 are B's; A's D2 row was superseded and is gone.
    assert sorted(
        (r["event_date"], r["line_number"], r["batch_id"])
        for r in store.read_arrow(QUARANTINE.name).to_pylist()
    ) == sorted([(D1, 1, a), (D2, 3, b), (D3, 4, b)])


def test_the_run_that_publishes_last_wins_even_when_it_appended_first(tmp_path):
    store = DeltaStore(str(tmp_path))
    a, b = new_batch_id(), new_batch_id()
    _append(store, a, [(D1, 1), (D2, 2)])
    _append(store, b, [(D2, 3)])
    _publish_cleaned(store, b, D2, D2, [])
    settle_quarantine(store, D2, D2)  # A is in flight: its D2 row stays
    _publish_cleaned(store, a, D1, D2, [("e1", D1)])
    settle_quarantine(store, D1, D2)
    assert sorted(
        (r["event_date"], r["line_number"], r["batch_id"])
        for r in store.read_arrow(QUARANTINE.name).to_pylist()
    ) == sorted([(D1, 1, a), (D2, 2, a)])
    assert sorted(published_quarantine(store, D1, D2).column("line_number").to_pylist()) == [1, 2]


def test_a_batch_never_published_is_removed_only_once_its_run_must_have_died(tmp_path):
    store = DeltaStore(str(tmp_path))
    now = datetime(2026, 3, 4, 12, tzinfo=timezone.utc)
    dead, in_flight, published = (
        new_batch_id(now - ABANDONED_AFTER - timedelta(minutes=1)),
        new_batch_id(now - timedelta(minutes=5)),
        new_batch_id(now),
    )
    _append(store, dead, [(D1, 1)])
    _append(store, in_flight, [(D1, 2)])
    _append(store, published, [(D1, 3)])
    _publish_cleaned(store, published, D1, D1, [])
    settle_quarantine(store, D1, D1, now=now)
    assert sorted(store.read_arrow(QUARANTINE.name).column("batch_id").to_pylist()) == sorted(
        [in_flight, published]
    )
    assert batch_began(dead) == (now - ABANDONED_AFTER - timedelta(minutes=1)).replace(
        microsecond=0
    )


def test_settling_reads_again_when_another_run_appends_in_its_range_meanwhile(
    tmp_path, monkeypatch
):
    store = DeltaStore(str(tmp_path))
    old, new, late = new_batch_id(), new_batch_id(), new_batch_id()
    _append(store, old, [(D1, 1)])
    _publish_cleaned(store, old, D1, D1, [])
    _append(store, new, [(D1, 2)])
    _publish_cleaned(store, new, D1, D1, [])
    write_arrow = DeltaStore.write_arrow

    def another_run_appends_first(self, schema, data, *args, **kwargs):
        if kwargs.get("read_version") is not None and not getattr(self, "_raced", False):
            self._raced = True  # a fault point between settling's read and its commit
            _append(self, late, [(D1, 3)])
        return write_arrow(self, schema, data, *args, **kwargs)

    monkeypatch.setattr(DeltaStore, "write_arrow", another_run_appends_first)
    settle_quarantine(store, D1, D1)
    assert sorted(store.read_arrow(QUARANTINE.name).column("batch_id").to_pylist()) == sorted(
        [new, late]
    )


def test_a_publication_computed_from_an_older_raw_version_is_refused_and_leaves_nothing(tmp_path):
    """B computed D1..D2 from raw v6 and published; A computed D2 from raw v5 and commits after it."""
    from lakehouse.engines.batch import ArrowBatch

    store = DeltaStore(str(tmp_path))
    b = new_batch_id()
    _append(store, b, [(D2, 1)])
    _publish_cleaned(store, b, D1, D2, [("new", D2)], inputs={"raw_events": 6})
    before = {t: store.version(t) for t in (CLEANED_EVENTS.name, QUARANTINE.name)}
    a = new_batch_id()
    with pytest.raises(StaleInputError, match="raw_events v6"):
        publish_pair(
            store,
            ArrowBatch(_cleaned([("old", D2)])),
            ArrowBatch(_quarantine(a, [(D2, 2)])),
            DateRange("event_date", D2, D2),
            {"raw_events": 5},
            a,
        )
    assert {t: store.version(t) for t in before} == before  # refused before its first step
    assert store.read_arrow(CLEANED_EVENTS.name).column("event_id").to_pylist() == ["new"]

    # Raced: the newer publication lands between A's check and A's commit; A's appended batch is discarded.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DeltaStore, "refuse_stale", lambda self, *args: None)
        with pytest.raises(StaleInputError):
            publish_pair(
                store,
                ArrowBatch(_cleaned([("old", D2)])),
                ArrowBatch(_quarantine(a, [(D2, 2)])),
                DateRange("event_date", D2, D2),
                {"raw_events": 5},
                a,
            )
    assert store.read_arrow(CLEANED_EVENTS.name).column("event_id").to_pylist() == ["new"]
    assert store.read_arrow(QUARANTINE.name).column("batch_id").to_pylist() == [b]
