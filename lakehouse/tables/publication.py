"""cleaned_events and quarantined_events are published together, or not at all, for every reader.

Delta commits one table at a time, so a run of the cleaning writes the pair in three steps:
1. the batch's quarantine rows are appended, each carrying the batch id: pair readers do not see them;
2. cleaned_events' date range is replaced in one commit that records the batch id and the range:
   this commit publishes both tables' rows for those dates;
3. the quarantine's range is settled: rows that no reader can see and no run will publish are removed.

Readers of the quarantine go through `published_quarantine`; cleaned_events needs no filter, its own
commit is the publication. Ranges of runs that overlap in time are settled per date: the last
publication of a date wins in both tables.

Settling never removes a batch that may still be published. A run in flight has appended its rows
(step 1) and not yet committed step 2, and another run's step 3 cannot tell it from a dead one by
its rows. So step 3 removes only:
- the rows of a batch on the dates a later publication took over (a batch publishes once);
- the rows of a batch never published and begun more than ABANDONED_AFTER ago (its run died:
  a run publishes seconds to minutes after its append; the batch id says when it began).
A dead run's rows stay invisible until then. Quarantine rows written before publications existed
have no batch id; they stay visible for dates that no publication covers yet.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.tables.schemas import CLEANED_EVENTS, QUARANTINE
from lakehouse.tables.storage import (
    INPUTS_KEY,
    DateRange,
    DeltaStore,
    StaleInputError,
    TableMovedError,
    fault_point,
    recorded_scope,
)

if TYPE_CHECKING:
    from lakehouse.engines.batch import Batch

BATCH_KEY = "lakehouse.batch"
ABANDONED_AFTER = timedelta(hours=6)
SETTLE_ATTEMPTS = 8
_BEGAN = "%Y%m%dT%H%M%SZ"


def new_batch_id(now: datetime | None = None) -> str:
    """A batch id that says when the batch began: `20261207T215253Z-<32 hex digits>`."""
    return f"{(now or datetime.now(timezone.utc)).strftime(_BEGAN)}-{uuid.uuid4().hex}"


def batch_began(batch_id: str) -> datetime | None:
    """When the batch began; None for an id made before ids carried the time."""
    if not re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{32}", batch_id):
        return None
    return datetime.strptime(batch_id.split("-", 1)[0], _BEGAN).replace(tzinfo=timezone.utc)


def publication(batch_id: str, start: date, end: date) -> dict[str, str]:
    """What the cleaned_events commit of a batch records (step 2)."""
    return {
        BATCH_KEY: json.dumps({"id": batch_id, "start": start.isoformat(), "end": end.isoformat()})
    }


def _publications(
    store: DeltaStore, version: int | None = None
) -> Iterator[tuple[str, date, date, dict[str, int]]]:
    """Every publication in cleaned_events' log up to `version`, newest first: (batch id, start, end,
    input versions)."""
    for info in store.history(CLEANED_EVENTS.name, version):
        batch = json.loads(info.get(BATCH_KEY) or "null")
        if (
            batch is not None
        ):  # else not a publication (compaction, or a table written before batches existed)
            yield (
                batch["id"],
                date.fromisoformat(batch["start"]),
                date.fromisoformat(batch["end"]),
                json.loads(info.get(INPUTS_KEY) or "{}"),
            )


def published_batches(
    store: DeltaStore, days: list[date], version: int | None = None
) -> dict[date, str]:
    """For each of `days`, the batch whose cleaned_events commit last covered it, as of `version`."""
    wanted, found = set(days), {}
    for batch, start, end, _ in _publications(store, version):
        for day in [d for d in wanted if start <= d <= end]:
            found[day] = batch
            wanted.discard(day)
        if not wanted:
            break
    return found


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _quarantine_rows(
    store: DeltaStore, start: date, end: date, version: int | None, columns: list[str] | None
) -> pa.Table:
    """The quarantine's physical rows of event dates [start, end], with event_date and batch_id whatever
    `columns` asks."""
    dataset = store.dataset(QUARANTINE.name, version)
    in_range = (pc.field("event_date") >= pa.scalar(start)) & (
        pc.field("event_date") <= pa.scalar(end)
    )
    wanted = sorted({*(columns or QUARANTINE.column_names), "event_date", "batch_id"})
    rows = dataset.to_table(
        filter=in_range, columns=[c for c in wanted if c in dataset.schema.names]
    )
    for name in [
        c for c in wanted if c not in rows.column_names
    ]:  # a table written before the column existed
        rows = rows.append_column(
            QUARANTINE.arrow().field(name).with_nullable(True),
            pa.nulls(rows.num_rows, QUARANTINE.arrow().field(name).type),
        )
    return rows


def _visible(rows: pa.Table, batches: dict[date, str]) -> pa.ChunkedArray:
    """Which rows readers see: their date's published batch, or legacy rows of a date no publication covers."""
    published = pa.array(
        [batches.get(d) for d in rows.column("event_date").to_pylist()], pa.string()
    )
    legacy = pc.and_(pc.is_null(published), pc.is_null(rows.column("batch_id")))
    return pc.or_(pc.fill_null(pc.equal(rows.column("batch_id"), published), False), legacy)


def published_quarantine(
    store: DeltaStore,
    start: date,
    end: date,
    cleaned_version: int | None = None,
    columns: list[str] | None = None,
    quarantine_version: int | None = None,
) -> pa.Table:
    """The quarantine rows of event dates [start, end] that belong to the published pair.

    As of `cleaned_version` (default: the newest), read from the quarantine at `quarantine_version`
    (default: the newest). A run checking its own publication passes the version its quarantine
    commit made: a later run that takes over some of its dates settles the quarantine, and removes
    the earlier run's rows there from the newest version, not from that one.
    """
    if store.version(QUARANTINE.name) is None:
        return (
            QUARANTINE.arrow().empty_table()
            if columns is None
            else QUARANTINE.arrow().empty_table().select(columns)
        )
    rows = _quarantine_rows(store, start, end, quarantine_version, columns)
    kept = rows.filter(_visible(rows, published_batches(store, _days(start, end), cleaned_version)))
    return kept.select(columns or list(QUARANTINE.column_names))


@dataclass(frozen=True)
class PublishedPair:
    """The versions a run's publication made."""

    cleaned_version: int  # the cleaned_events commit: the publication itself
    quarantine_version: int  # the quarantine after settling: what readers see now
    batch_version: int  # the quarantine append that holds the run's batch, whole


def publish_pair(
    store: DeltaStore,
    cleaned: Batch,
    quarantined: Batch,
    replace: DateRange,
    inputs: dict[str, int],
    batch_id: str,
) -> PublishedPair:
    """Publish a run's pair in the three steps above.

    Raises StaleInputError, having committed nothing visible, when a newer raw_events version
    already produced part of the range: the caller computes again from it.
    """
    store.refuse_stale(
        CLEANED_EVENTS, replace, inputs
    )  # before step 1, which a refusal would leave behind
    quarantine_version = quarantined.commit(store, QUARANTINE, inputs=inputs, append=True)
    fault_point("between_quarantine_and_cleaned_commits")
    try:
        cleaned_version = cleaned.commit(
            store,
            CLEANED_EVENTS,
            replace,
            inputs,
            properties=publication(batch_id, replace.start, replace.end),
        )
    except StaleInputError:
        discard_batch(store, batch_id, replace.start, replace.end)
        raise
    fault_point("between_cleaned_commit_and_settling")
    settled = settle_quarantine(store, replace.start, replace.end)
    return PublishedPair(cleaned_version, settled or quarantine_version, quarantine_version)


def settle_quarantine(
    store: DeltaStore, start: date, end: date, now: datetime | None = None
) -> int | None:
    """Step 3 for event dates [start, end]: the new quarantine version, if anything was removed.

    A read-modify-write of the range: when another run changes the range in between, it is read again.
    It removes rows and computes nothing, so it records no input versions: those stay on the appends.
    """
    now = now or datetime.now(timezone.utc)
    for _ in range(SETTLE_ATTEMPTS):
        version = store.version(QUARANTINE.name)
        rows = _quarantine_rows(store, start, end, version, None)
        published = published_batches(store, _days(start, end))
        ever_published = {batch for batch, *_ in _publications(store)}
        visible = _visible(rows, published).to_pylist()
        kept = [
            seen
            or (batch is not None and batch not in ever_published and not _abandoned(batch, now))
            for seen, batch in zip(visible, rows.column("batch_id").to_pylist())
        ]
        if all(kept):
            return None
        try:
            return store.write_arrow(
                QUARANTINE,
                rows.filter(pa.array(kept)),
                DateRange("event_date", start, end),
                read_version=version,
            )
        except TableMovedError:
            continue  # another run appended or settled in the range meanwhile: settle what is there now
    raise TableMovedError(
        f"{QUARANTINE.name}: {start}..{end} kept changing while it was settled "
        f"({SETTLE_ATTEMPTS} attempts); the next run settles it"
    )


def _abandoned(batch_id: str, now: datetime) -> bool:
    began = batch_began(batch_id)
    return began is None or now - began > ABANDONED_AFTER


def discard_batch(store: DeltaStore, batch_id: str, start: date, end: date) -> None:
    """Remove a batch that will never be published (its run refused its own publication) right away,
    rather than after ABANDONED_AFTER."""
    for _ in range(SETTLE_ATTEMPTS):
        version = store.version(QUARANTINE.name)
        rows = _quarantine_rows(store, start, end, version, None)
        mine = pc.fill_null(pc.equal(rows.column("batch_id"), batch_id), False)
        if not pc.any(mine).as_py():
            return
        try:
            store.write_arrow(
                QUARANTINE,
                rows.filter(pc.invert(mine)),
                DateRange("event_date", start, end),
                read_version=version,
            )
            return
        except TableMovedError:
            continue


def unpublished_lines(
    store: DeltaStore, lines: dict[tuple[date, date], int], raw_version: int
) -> dict[date, int]:
    """Of raw lines counted by (event date, ingest date), how many per event date no publication holds yet.

    A line of ingest date I is published on event date E when E's newest publication was computed
    from a raw_events version at or after the newest commit that wrote I (as of `raw_version`, the
    version the lines were read at). E without any publication holds none of its lines.
    """
    wanted_days = {event_date for event_date, _ in lines}
    published_from: dict[date, int] = {}
    for _, start, end, inputs in _publications(store):
        for day in [d for d in wanted_days if start <= d <= end]:
            published_from[day] = inputs.get("raw_events", -1)
            wanted_days.discard(day)
        if not wanted_days:
            break
    wanted_ingests = {ingest_date for _, ingest_date in lines}
    written_at: dict[date, int] = {}
    for info in store.history("raw_events", raw_version):
        scope = recorded_scope(info)
        if scope is None:
            continue  # an append, or a commit from before scopes were recorded: when it wrote a date is not known
        for day in [
            d
            for d in wanted_ingests
            if not isinstance(scope, DateRange) or scope.start <= d <= scope.end
        ]:
            written_at[day] = info["version"]
            wanted_ingests.discard(day)
        if not wanted_ingests:
            break
    behind: dict[date, int] = {}
    for (event_date, ingest_date), count in lines.items():
        if event_date not in published_from or published_from[event_date] < written_at.get(
            ingest_date, 0
        ):
            behind[event_date] = behind.get(event_date, 0) + count
    return dict(sorted(behind.items()))
