"""The cleaned/quarantine pair, step by step, on real Delta tables: readers see published batches only."""

from datetime import date, datetime, timezone

import pyarrow as pa

from lakehouse.tables.publication import publication, published_batches, published_quarantine, settle_quarantine
from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE
from lakehouse.tables.storage import DateRange, DeltaStore

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def _quarantine(batch, lines):
    """Quarantine rows of `batch`: (event_date, line_number) each."""
    rows = [
        {"event_date": day, "ingest_date": day, "source_file": "f", "line_number": n, "raw_line": "x", "raw_bytes": None, "reason": "empty_line", "event_id": None, "batch_id": batch}
        for day, n in lines
    ]
    return pa.Table.from_pylist(rows, schema=QUARANTINE.arrow())


def _cleaned(events):
    ts = datetime(2026, 3, 1, tzinfo=timezone.utc)
    rows = [
        {c: None for c in CLEANED_EVENTS.column_names}
        | {"event_id": eid, "event_name": "app_opened", "event_ts": ts, "event_date": day, "device_ts": ts, "received_at": ts, "user_id": "u", "identity": "logged_in", "platform": "ios", "ingest_date": day, "source_file": "f", "line_number": 1}
        for eid, day in events
    ]
    return pa.Table.from_pylist(rows, schema=CLEANED_EVENTS.arrow())


def _publish(store, batch, start, end, quarantine_lines, events, crash_after_quarantine=False):
    """One cleaning run's commits, as assets/cleaned.py makes them."""
    store.write_arrow(QUARANTINE, _quarantine(batch, quarantine_lines), append=True)
    if crash_after_quarantine:
        return
    store.write_arrow(CLEANED_EVENTS, _cleaned(events), DateRange("event_date", start, end), properties=publication(batch, start, end))
    settle_quarantine(store, start, end)


def _seen(store):
    return sorted((r["event_date"], r["line_number"], r["batch_id"]) for r in published_quarantine(store, D1, D2).to_pylist())


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


def test_quarantine_rows_from_before_publications_stay_visible_until_a_date_is_published(tmp_path):
    store = DeltaStore(str(tmp_path))
    from deltalake import write_deltalake

    legacy = _quarantine("-", [(D1, 1), (D2, 2)]).drop_columns(["batch_id"])  # the table as written before batch ids
    write_deltalake(store.uri(QUARANTINE.name), legacy, partition_by=["event_date"])
    store.write_arrow(CLEANED_EVENTS, _cleaned([("e1", D1)]))  # no publication recorded
    assert _seen(store) == [(D1, 1, None), (D2, 2, None)]
    _publish(store, "a", D2, D2, [(D2, 5)], [])
    assert _seen(store) == [(D1, 1, None), (D2, 5, "a")]
