"""Crashes and concurrency: a killed writer loses nothing, writers of different partitions all commit."""

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

from lakehouse.schemas import RAW_EVENTS
from lakehouse.storage import DeltaStore

# Writes `rows` lines into ingest date `day` of raw_events under `root`, `repeat` times, replacing the partition.
WRITER = """
import sys
from datetime import date
import pyarrow as pa
from lakehouse.schemas import RAW_EVENTS
from lakehouse.storage import DateRange, DeltaStore
root, day, rows, repeat = sys.argv[1], date.fromisoformat(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
batch = pa.table({
    "ingest_date": pa.array([day] * rows, pa.date32()),
    "source_file": pa.array([f"date={day}/events.jsonl"] * rows),
    "line_number": pa.array(range(1, rows + 1), pa.int64()),
    "raw_line": pa.array([f"line {i} of {day} " + "x" * 60 for i in range(rows)]),
}, schema=RAW_EVENTS.arrow())
store = DeltaStore(root)
print("writing", flush=True)
for _ in range(repeat):
    store.write_arrow(RAW_EVENTS, batch, DateRange("ingest_date", day, day))
print("done", flush=True)
"""


def _writer(root, day, rows, repeat=1):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), day.isoformat(), str(rows), str(repeat)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_writers_of_different_partitions_all_commit(tmp_path):
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(4)]
    _writer(tmp_path, days[0], 10).wait()  # the table exists before the race starts
    writers = [_writer(tmp_path, day, 1000 + i, repeat=5) for i, day in enumerate(days)]
    for w in writers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-2000:]
    store = DeltaStore(str(tmp_path))
    assert store.daily_rows(RAW_EVENTS.name, "ingest_date") == {day: 1000 + i for i, day in enumerate(days)}
    assert store.version(RAW_EVENTS.name) == 1 + 4 * 5 - 1


def test_a_writer_killed_mid_commit_leaves_the_previous_version_and_the_rerun_is_exact(tmp_path):
    day = date(2026, 3, 1)
    assert _writer(tmp_path, day, 1000).wait() == 0
    store = DeltaStore(str(tmp_path))
    committed = {store.version(RAW_EVENTS.name): 1000}
    killed_mid_write = 0
    for delay in (0.0, 0.1, 0.3, 0.6, 1.0, 2.0):
        writer = _writer(tmp_path, day, 2_000_000)
        assert writer.stdout.readline().strip() == "writing"  # the batch is built, the Delta write starts now
        time.sleep(delay)
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            killed_mid_write += 1
        writer.wait()
        # Whatever was half-written, a reader sees a complete committed version: the previous one, or the new one whole.
        version = store.version(RAW_EVENTS.name)
        rows = store.daily_rows(RAW_EVENTS.name, "ingest_date")[day]
        assert version in committed or rows == 2_000_000, (version, rows)
        assert rows == committed.get(version, 2_000_000)
        assert len(store.read_arrow(RAW_EVENTS.name, columns=["line_number"])) == rows
        committed[version] = rows
    assert killed_mid_write >= 3
    assert _writer(tmp_path, day, 2_000_000).wait() == 0
    assert store.daily_rows(RAW_EVENTS.name, "ingest_date") == {day: 2_000_000}
    assert len(store.read_arrow(RAW_EVENTS.name, columns=["line_number"])) == 2_000_000
