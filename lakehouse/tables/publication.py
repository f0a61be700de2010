"""cleaned_events and quarantined_events are published together, or not at all, for every reader.

Delta commits one table at a time, so a run of the cleaning writes the pair in three steps:
1. the batch's quarantine rows are appended, each carrying the batch id: pair readers do not see them;
2. cleaned_events' date range is replaced in one commit that records the batch id and the range:
   this commit publishes both tables' rows for those dates;
3. quarantine rows of the range from any batch but the published one are removed.
A run that dies after step 1 leaves quarantine rows no reader sees (the next run of the range
removes them); one that dies after step 2 leaves extra rows that readers filter out. Readers of the
quarantine go through `published_quarantine`; cleaned_events needs no filter, its own commit is
the publication. Ranges of runs that overlap in time are settled per date: the last publication of
a date wins in both tables. Quarantine rows written before publications existed have no batch id;
they stay visible for dates that no publication covers yet.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE
from lakehouse.tables.storage import DateRange, DeltaStore

BATCH_KEY = "lakehouse.batch"


def new_batch_id() -> str:
    return uuid.uuid4().hex


def publication(batch_id: str, start: date, end: date) -> dict[str, str]:
    """What the cleaned_events commit of a batch records (step 2)."""
    return {BATCH_KEY: json.dumps({"id": batch_id, "start": start.isoformat(), "end": end.isoformat()})}


def published_batches(store: DeltaStore, days: list[date], version: int | None = None) -> dict[date, str]:
    """For each of `days`, the batch whose cleaned_events commit last covered it, as of `version`."""
    wanted, found = set(days), {}
    for info in store.history(CLEANED_EVENTS.name, version):
        batch = json.loads(info.get(BATCH_KEY) or "null")
        if batch is None:
            continue  # not a publication (compaction, or a table written before batches existed)
        start, end = date.fromisoformat(batch["start"]), date.fromisoformat(batch["end"])
        for day in [d for d in wanted if start <= d <= end]:
            found[day] = batch["id"]
            wanted.discard(day)
        if not wanted:
            break
    return found


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def published_quarantine(store: DeltaStore, start: date, end: date, cleaned_version: int | None = None, columns: list[str] | None = None) -> pa.Table:
    """The quarantine rows of event dates [start, end] that belong to the published pair."""
    if store.version(QUARANTINE.name) is None:
        return QUARANTINE.arrow().empty_table() if columns is None else QUARANTINE.arrow().empty_table().select(columns)
    batches = published_batches(store, _days(start, end), cleaned_version)
    dataset = store.dataset(QUARANTINE.name)
    in_range = (pc.field("event_date") >= pa.scalar(start)) & (pc.field("event_date") <= pa.scalar(end))
    wanted = sorted({*(columns or QUARANTINE.column_names), "event_date", "batch_id"})
    rows = dataset.to_table(filter=in_range, columns=[c for c in wanted if c in dataset.schema.names])
    for name in [c for c in wanted if c not in rows.column_names]:  # a table written before the column existed
        rows = rows.append_column(QUARANTINE.arrow().field(name).with_nullable(True), pa.nulls(rows.num_rows, QUARANTINE.arrow().field(name).type))
    published = pa.array([batches.get(d) for d in rows.column("event_date").to_pylist()], pa.string())
    legacy = pc.and_(pc.is_null(published), pc.is_null(rows.column("batch_id")))
    kept = rows.filter(pc.or_(pc.fill_null(pc.equal(rows.column("batch_id"), published), False), legacy))
    return kept.select(columns or list(QUARANTINE.column_names))


def settle_quarantine(store: DeltaStore, start: date, end: date, inputs: dict[str, int]) -> int | None:
    """Step 3: leave only the published batch's rows in the quarantine's range. The new version, if it changed."""
    published = published_quarantine(store, start, end)
    physical = sum(store.daily_rows(QUARANTINE.name, "event_date").get(d, 0) for d in _days(start, end))
    if physical == published.num_rows:
        return None
    return store.write_arrow(QUARANTINE, published, DateRange("event_date", start, end), inputs)
