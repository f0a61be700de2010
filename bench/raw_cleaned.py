"""Raw and cleaned layers: events per second at scale, and the cost of one new day vs table size.

1. Throughput: land N events (30 days), materialize raw_events then cleaned_events for the whole
   range in one run each on the profile's engine (LAKEHOUSE_ENGINE, default duckdb), and print
   events/s for each. Reference, same process: one DuckDB SQL query over the same raw_events table
   that parses every line's JSON and keeps the first delivery of each event_id; cleaning is given as
   a fraction of the reference's speed (target: at least 0.5), both as the clean_events transform
   alone (both tables computed to Arrow) and as the whole materialization (Delta writes, checks,
   metadata). The pandera validation of the
   cleaned table (polars on Arrow) is timed on its own and given as a share of the cleaning time.
2. Incremental cost: with the tables holding 7, 37 and 90 days, materialize one more day (raw and
   cleaned) and print the times and their ratios; they should stay near 1 (work grows with the
   partition and its fixed 30-day identity window, not with the table).

Usage: .venv/bin/python bench/raw_cleaned.py [--events 187000 1000000 5000000] [--skip-incremental]
       .venv/bin/python bench/raw_cleaned.py --events   (incremental part only)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

warnings.simplefilter("ignore")
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from dagster import materialize  # noqa: E402

from assets.cleaned import cleaned_events  # noqa: E402
from assets.raw import raw_events  # noqa: E402
from lakehouse.engines import engine_named  # noqa: E402
from lakehouse.engines.duckdb import get_duckdb_session  # noqa: E402
from lakehouse.events.generator import GeneratorConfig, generate  # noqa: E402
from lakehouse.tables.schemas import CLEANED_EVENTS  # noqa: E402
from lakehouse.tables.storage import DeltaStore  # noqa: E402
from lakehouse.tables.validation import validate_arrow  # noqa: E402
from lakehouse.transforms.cleaning import clean_events  # noqa: E402
from resources.delta import DeltaStorage  # noqa: E402
from resources.engine import EngineResource  # noqa: E402
from resources.landing import LandingArea  # noqa: E402

# The reference: parse each line's JSON once and keep the first delivery of every event_id.
REFERENCE_SQL = """
SELECT * FROM (
    SELECT json_extract_string(line, '$.event_id') AS event_id,
           json_extract_string(line, '$.event_name') AS event_name,
           TRY_CAST(json_extract_string(line, '$.timestamp') AS TIMESTAMPTZ) AS event_ts,
           json_extract_string(line, '$.user_id') AS user_id,
           json_extract(line, '$.properties') AS properties,
           ingest_date, source_file, line_number
    FROM (SELECT ltrim(raw_line, chr(65279)) AS line, ingest_date, source_file, line_number FROM raw_lines)
    WHERE json_valid(line)
)
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ingest_date, source_file, line_number) = 1
"""

EVENTS_PER_USER_DAY = 2.08  # measured on the default generator settings


def _materialize(root: Path, selection: list[str], first: date, last: date) -> float:
    resources = {
        "delta": DeltaStorage(root=str(root / "delta")),
        "landing": LandingArea(path=str(root / "landing")),
        "engine": EngineResource(kind=os.environ.get("LAKEHOUSE_ENGINE", "duckdb")),
    }
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    began = time.perf_counter()
    result = materialize(
        [raw_events, cleaned_events], selection=selection, resources=resources, tags=tags
    )
    assert result.success
    return time.perf_counter() - began


def _lines(root: Path) -> int:
    return sum(
        1 for f in (root / "landing").glob("date=*/*.jsonl") for _ in f.open(encoding="utf-8")
    )


def throughput(events: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-raw-cleaned-"))
    start, days = date(2026, 9, 1), 30
    users = int(events / (EVENTS_PER_USER_DAY * days))
    began = time.perf_counter()
    generate(root / "landing", start, days, GeneratorConfig(users=users))
    generated = time.perf_counter() - began
    lines = _lines(root)
    end = start + timedelta(days=days - 1)
    raw_seconds = _materialize(root, ["raw_events"], start, end)
    store = DeltaStore(str(root / "delta"))
    conn = get_duckdb_session()._conn  # noqa: SLF001
    conn.register("raw_lines", store.table("raw_events").to_pyarrow_dataset())
    began = time.perf_counter()
    reference_rows = conn.sql(REFERENCE_SQL).fetch_arrow_table().num_rows
    reference = time.perf_counter() - began
    engine = engine_named(os.environ.get("LAKEHOUSE_ENGINE", "duckdb"))
    began = time.perf_counter()
    with engine.persisting() as persist:
        result = clean_events(engine.read(store, "raw_events"), start, end, persist)
        engine.to_arrow(result.cleaned), engine.to_arrow(result.quarantined)
    transform = time.perf_counter() - began
    cleaned_seconds = _materialize(root, ["cleaned_events", "quarantined_events"], start, end)
    cleaned = store.read_arrow("cleaned_events")
    began = time.perf_counter()
    validate_arrow(CLEANED_EVENTS, cleaned)
    validation = time.perf_counter() - began
    print(f"{lines:>9} lines ({users} users x {days} days; generated in {generated:.0f} s)")
    print(
        f"  reference DuckDB SQL parse + dedupe: {reference:7.1f} s  {lines / reference:9.0f} lines/s "
        f"({reference_rows} events)"
    )
    print(
        f"  raw_events materialization:          {raw_seconds:7.1f} s  {lines / raw_seconds:9.0f} lines/s"
    )
    print(
        f"  clean_events transform alone:        {transform:7.1f} s  {lines / transform:9.0f} lines/s  "
        f"({reference / transform:.2f}x the reference's speed)"
    )
    print(
        f"  cleaned_events materialization:      {cleaned_seconds:7.1f} s  "
        f"{lines / cleaned_seconds:9.0f} lines/s  "
        f"({reference / cleaned_seconds:.2f}x the reference's speed)"
    )
    print(
        f"  pandera validation of cleaned_events ({cleaned.num_rows} rows): {validation:.2f} s, "
        f"{validation / cleaned_seconds:.1%} of the cleaning time"
    )


def incremental() -> None:
    """One new day on tables holding 7, 37 and 90 days. Cleaning reads the 30 ingest days before the
    new day for identity ties, so its cost grows until the table holds 30 days and is flat after."""
    seconds = {}
    for history_days in (7, 37, 90):
        root = Path(tempfile.mkdtemp(prefix=f"bench-incremental-{history_days}-"))
        start = date(2026, 5, 1)
        new_day = start + timedelta(days=history_days)
        generate(root / "landing", start, history_days + 1, GeneratorConfig(users=3000))
        _materialize(root, ["raw_events"], start, new_day - timedelta(days=1))
        _materialize(
            root, ["cleaned_events", "quarantined_events"], start, new_day - timedelta(days=1)
        )
        raw_seconds = _materialize(root, ["raw_events"], new_day, new_day)
        cleaned_seconds = _materialize(
            root, ["cleaned_events", "quarantined_events"], new_day, new_day
        )
        seconds[history_days] = (raw_seconds, cleaned_seconds)
        print(
            f"table holds {history_days:>2} days: one new day raw {raw_seconds:5.1f} s, "
            f"cleaned {cleaned_seconds:5.1f} s"
        )
    for a, b in ((7, 90), (37, 90)):
        print(
            f"ratio {b}-day / {a}-day table: raw {seconds[b][0] / seconds[a][0]:.2f}, "
            f"cleaned {seconds[b][1] / seconds[a][1]:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="*", default=[187_000, 1_000_000, 5_000_000])
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    for n in args.events:
        throughput(n)
    if not args.skip_incremental:
        incremental()


if __name__ == "__main__":
    main()
