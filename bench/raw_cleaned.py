"""Raw and cleaned layers: events per second at scale, and the cost of one new day vs table size.

1. Throughput: land N events (30 days), materialize raw_events then cleaned_events for the whole
   range in one run each, and print events/s for each. Reference, same process: a bare Spark job
   that parses the same landed JSON once (spark.read.json + count); the cleaned figure is also given
   as a multiple of it.
2. Incremental cost: with the tables holding 7, 37 and 90 days, materialize one more day (raw and
   cleaned) and print the times and their ratios; they should stay near 1 (work grows with the
   partition and its fixed 30-day identity window, not with the table).

Usage: .venv/bin/python bench/raw_cleaned.py [--events 1000000 5000000] [--skip-incremental]
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
from lakehouse.generator import GeneratorConfig, generate  # noqa: E402
from lakehouse.engines.spark import get_spark  # noqa: E402
from resources.delta import DeltaStorage  # noqa: E402
from resources.landing import LandingArea  # noqa: E402
from resources.spark import SparkResource  # noqa: E402

EVENTS_PER_USER_DAY = 2.08  # measured on the default generator settings


def _materialize(root: Path, selection: list[str], first: date, last: date) -> float:
    resources = {"delta": DeltaStorage(root=str(root / "delta")), "landing": LandingArea(path=str(root / "landing")), "spark": SparkResource()}
    tags = {"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()}
    began = time.perf_counter()
    result = materialize([raw_events, cleaned_events], selection=selection, resources=resources, tags=tags)
    assert result.success
    return time.perf_counter() - began


def _lines(root: Path) -> int:
    return sum(1 for f in (root / "landing").glob("date=*/*.jsonl") for _ in f.open(encoding="utf-8"))


def throughput(events: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-raw-cleaned-"))
    start, days = date(2026, 9, 1), 30
    users = int(events / (EVENTS_PER_USER_DAY * days))
    began = time.perf_counter()
    generate(root / "landing", start, days, GeneratorConfig(users=users))
    generated = time.perf_counter() - began
    lines = _lines(root)
    spark = get_spark()
    began = time.perf_counter()
    spark.read.json(str(root / "landing" / "date=*" / "*.jsonl")).count()
    reference = time.perf_counter() - began
    end = start + timedelta(days=days - 1)
    raw_seconds = _materialize(root, ["raw_events"], start, end)
    cleaned_seconds = _materialize(root, ["cleaned_events", "quarantined_events"], start, end)
    print(f"{lines:>9} lines ({users} users x {days} days; generated in {generated:.0f} s)")
    print(f"  reference spark.read.json + count: {reference:7.1f} s  {lines / reference:9.0f} lines/s")
    print(f"  raw_events materialization:        {raw_seconds:7.1f} s  {lines / raw_seconds:9.0f} lines/s")
    print(f"  cleaned_events materialization:    {cleaned_seconds:7.1f} s  {lines / cleaned_seconds:9.0f} lines/s  ({cleaned_seconds / reference:.1f}x the reference)")


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
        _materialize(root, ["cleaned_events", "quarantined_events"], start, new_day - timedelta(days=1))
        raw_seconds = _materialize(root, ["raw_events"], new_day, new_day)
        cleaned_seconds = _materialize(root, ["cleaned_events", "quarantined_events"], new_day, new_day)
        seconds[history_days] = (raw_seconds, cleaned_seconds)
        print(f"table holds {history_days:>2} days: one new day raw {raw_seconds:5.1f} s, cleaned {cleaned_seconds:5.1f} s")
    for a, b in ((7, 90), (37, 90)):
        print(f"ratio {b}-day / {a}-day table: raw {seconds[b][0] / seconds[a][0]:.2f}, cleaned {seconds[b][1] / seconds[a][1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="*", default=[1_000_000, 5_000_000])
    parser.add_argument("--skip-incremental", action="store_true")
    args = parser.parse_args()
    get_spark()  # start-up is paid once, before any timing
    for n in args.events:
        throughput(n)
    if not args.skip_incremental:
        incremental()


if __name__ == "__main__":
    main()
