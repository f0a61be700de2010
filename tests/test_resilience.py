"""Crashes and concurrency: a killed writer loses nothing, writers of different partitions all commit."""

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from lakehouse.tables.publication import ABANDONED_AFTER, settle_quarantine
from lakehouse.tables.schemas import RAW_EVENTS
from lakehouse.tables.storage import DeltaStore

# Every test here runs writers or Dagster in processes of their own, and kills some of them.
pytestmark = pytest.mark.slow

# Writes `rows` lines into ingest date `day` of raw_events under `root`, `repeat` times, replacing the partition.
WRITER = """
import sys
from datetime import date
import pyarrow as pa
from lakehouse.tables.publication import ABANDONED_AFTER, settle_quarantine
from lakehouse.tables.schemas import RAW_EVENTS
from lakehouse.tables.storage import DateRange, DeltaStore
root, day, rows, repeat = sys.argv[1], date.fromisoformat(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
batch = pa.table({
    "ingest_date": pa.array([day] * rows, pa.date32()),
    "source_file": pa.array([f"date={day}/events.jsonl"] * rows),
    "line_number": pa.array(range(1, rows + 1), pa.int64()),
    "raw_line": pa.array([f"line {i} of {day} " + "x" * 60 for i in range(rows)]),
    "raw_bytes": pa.nulls(rows, pa.binary()),
}, schema=RAW_EVENTS.arrow())
store = DeltaStore(root)
print("writing", flush=True)
for _ in range(repeat):
    store.write_arrow(RAW_EVENTS, batch, DateRange("ingest_date", day, day))
print("done", flush=True)
"""


def _writer(root, day, rows, repeat=1):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), day.isoformat(), str(rows), str(repeat)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_writers_of_different_partitions_all_commit(tmp_path):
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(4)]
    _writer(tmp_path, days[0], 10).wait()  # the table exists before the race starts
    writers = [_writer(tmp_path, day, 1000 + i, repeat=5) for i, day in enumerate(days)]
    for w in writers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-2000:]
    store = DeltaStore(str(tmp_path))
    assert store.daily_rows(RAW_EVENTS.name, "ingest_date") == {
        day: 1000 + i for i, day in enumerate(days)
    }
    assert store.version(RAW_EVENTS.name) == 1 + 4 * 5 - 1


def test_a_writer_killed_mid_commit_leaves_the_previous_version_and_the_rerun_is_exact(tmp_path):
    day, rows = date(2026, 3, 1), 300_000
    timed = _writer(tmp_path, day, rows)
    assert timed.stdout.readline().strip() == "writing"
    started = time.monotonic()
    assert timed.wait() == 0
    write_seconds = (
        time.monotonic() - started
    )  # kills are spread over this, whatever the machine's speed
    store = DeltaStore(str(tmp_path))
    committed = {store.version(RAW_EVENTS.name): rows}
    new_rows = rows + 1  # tells a new version from the old one
    killed_mid_write = 0
    for fraction in (0.0, 0.1, 0.25, 0.4, 0.6, 0.8):
        writer = _writer(tmp_path, day, new_rows)
        assert (
            writer.stdout.readline().strip() == "writing"
        )  # the batch is built, the Delta write starts now
        time.sleep(fraction * write_seconds)
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            killed_mid_write += 1
        writer.wait()
        # Whatever was half-written, a reader sees a complete committed version: the previous one, or the new one whole.
        version = store.version(RAW_EVENTS.name)
        seen = store.daily_rows(RAW_EVENTS.name, "ingest_date")[day]
        assert seen == committed.get(version, new_rows), (version, seen)
        assert len(store.read_arrow(RAW_EVENTS.name, columns=["line_number"])) == seen
        committed[version] = seen
    assert killed_mid_write >= 3
    assert _writer(tmp_path, day, new_rows).wait() == 0
    assert store.daily_rows(RAW_EVENTS.name, "ingest_date") == {day: new_rows}
    assert len(store.read_arrow(RAW_EVENTS.name, columns=["line_number"])) == new_rows


# Through Dagster: the same guarantees for real materializations of cleaned_events, launched as a
# data engineer launches them from a shell (`dagster asset materialize`, one process, one JVM each).
CLEANED = "cleaned_events,quarantined_events"


def _dagster_env(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return os.environ | {
        "LAKEHOUSE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def _materialize(env, select, first, last, log):
    from lakehouse.config import REPO_ROOT

    command = [
        os.path.join(os.path.dirname(sys.executable), "dagster"),
        "asset",
        "materialize",
        "-m",
        "definitions",
        "--select",
        select,
        "--partition-range",
        f"{first}...{last}",
    ]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _landed(tmp_path, env, start, days, users):
    bin_dir = os.path.dirname(sys.executable)
    subprocess.run(
        [
            os.path.join(bin_dir, "lakehouse"),
            "generate",
            "--start",
            start.isoformat(),
            "--days",
            str(days),
            "--users",
            str(users),
        ],
        env=env,
        check=True,
        capture_output=True,
    )


def _cleaned_state(store):
    """Rows per event date of the pair as readers see it (the quarantine through its publication)."""
    from collections import Counter

    from lakehouse.tables.publication import published_quarantine

    quarantined = (
        published_quarantine(store, date(2000, 1, 1), date(2100, 1, 1), columns=["event_date"])
        .column("event_date")
        .to_pylist()
    )
    return {
        "cleaned_events": store.daily_rows("cleaned_events", "event_date"),
        "quarantined_events": dict(Counter(quarantined)),
    }


def _data_files(table_dir):
    return set(table_dir.glob("event_date=*/*.parquet"))


def _materialized_lake(tmp_path, start, days, users):
    """`days` days landed from `start` and raw_events + the cleaned pair materialized once, as a user does."""
    first, last = start, start + timedelta(days=days - 1)
    env = _dagster_env(tmp_path)
    _landed(tmp_path, env, start, days, users=users)
    assert (
        _materialize(env, "raw_events," + CLEANED, first, last, tmp_path / "first.log").wait(
            timeout=900
        )
        == 0
    ), (tmp_path / "first.log").read_text()[-3000:]
    return env, first, last, DeltaStore(str(tmp_path / "data" / "delta"))


def test_a_materialization_killed_mid_write_leaves_the_previous_version_and_the_rerun_is_exact(
    tmp_path,
):
    env, first, last, store = _materialized_lake(tmp_path, date(2026, 3, 1), 4, users=6000)
    before = _cleaned_state(store)
    version = store.version("cleaned_events")
    table_dir = tmp_path / "data" / "delta" / "cleaned_events"
    committed_files = _data_files(table_dir)

    # Rebuild the range and SIGKILL the run (its Python process and Spark's JVM) as soon as the first
    # new data file of cleaned_events is on disk: the write has started and is not yet committed.
    run = _materialize(env, CLEANED, first, last, tmp_path / "killed.log")
    deadline = time.monotonic() + 900
    while not (_data_files(table_dir) - committed_files):
        assert run.poll() is None, (
            "the run ended before it wrote:\n" + (tmp_path / "killed.log").read_text()[-3000:]
        )
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    assert store.version("cleaned_events") == version, (
        "the killed run committed; nothing was tested"
    )
    assert _data_files(table_dir) - committed_files  # its orphaned files are there, and unread:
    assert _cleaned_state(store) == before
    assert len(store.read_arrow("cleaned_events", columns=["event_id"])) == sum(
        before["cleaned_events"].values()
    )

    rerun = _materialize(env, CLEANED, first, last, tmp_path / "rerun.log")
    assert rerun.wait(timeout=900) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    assert store.version("cleaned_events") > version
    assert (
        _cleaned_state(store) == before
    )  # the accounting check passed too, or the run would have failed


def _published_pair(store, first, last):
    """What a reader of the pair sees per event date: cleaned event ids, quarantined lines."""
    from lakehouse.tables.publication import published_quarantine

    cleaned = store.read_arrow("cleaned_events", columns=["event_date", "event_id"]).to_pylist()
    quarantined = published_quarantine(
        store, first, last, columns=["event_date", "source_file", "line_number", "reason"]
    ).to_pylist()
    return sorted((r["event_date"], r["event_id"]) for r in cleaned), sorted(
        (r["event_date"], r["source_file"], r["line_number"], r["reason"]) for r in quarantined
    )


def test_a_run_killed_between_the_quarantine_and_the_cleaned_commit_publishes_neither(tmp_path):
    start = date(2026, 3, 1)
    env, first, last, store = _materialized_lake(tmp_path, start, 3, users=300)
    before = _published_pair(store, first, last)

    # New content: 25 broken lines are appended to the middle day (a landed file only grows), so the next
    # run quarantines them.
    landed = tmp_path / "data" / "landing" / f"date={start + timedelta(days=1)}" / "events.jsonl"
    lines = landed.read_text().splitlines()
    broken = [line[:-1] for line in lines if line.startswith("{") and line.endswith("}")][:25]
    with landed.open("a") as f:
        f.write("".join(line + "\n" for line in broken))
    assert _materialize(env, "raw_events", first, last, tmp_path / "raw.log").wait(timeout=900) == 0
    versions = {t: store.version(t) for t in ("cleaned_events", "quarantined_events")}

    killed = _materialize(
        env | {"LAKEHOUSE_FAULT": "between_quarantine_and_cleaned_commits"},
        CLEANED,
        first,
        last,
        tmp_path / "killed.log",
    )
    assert killed.wait(timeout=900) == -signal.SIGKILL
    assert store.version("quarantined_events") == versions["quarantined_events"] + 1, (
        "the quarantine was not committed: nothing was tested"
    )
    assert store.version("cleaned_events") == versions["cleaned_events"]
    assert _published_pair(store, first, last) == before  # the half-written quarantine is invisible

    rerun = _materialize(env, CLEANED, first, last, tmp_path / "rerun.log")
    assert rerun.wait(timeout=900) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    cleaned, quarantined = _published_pair(store, first, last)
    # Worked out from the edit alone: each appended broken line is one more malformed_json row
    # (attributed to its ingest date), and the cleaned events are the same.
    assert cleaned == before[0]
    malformed = [
        q
        for q in quarantined
        if q[3] == "malformed_json"
        and q[1].endswith(landed.parent.name + "/events.jsonl")
        and q[2] > len(lines)
    ]
    assert len(malformed) == len(broken)
    assert len(quarantined) == len(before[1]) + len(broken)
    # The killed run's batch stays, unseen, until it is certainly dead: to a settle it looks like a run in flight.
    assert store.row_count("quarantined_events") > len(quarantined)
    settle_quarantine(
        store, first, last, now=datetime.now(timezone.utc) + ABANDONED_AFTER + timedelta(minutes=1)
    )
    assert store.row_count("quarantined_events") == len(quarantined)
    assert _published_pair(store, first, last) == (cleaned, quarantined)


def test_two_runs_started_at_the_same_moment_on_overlapping_ranges_leave_what_one_run_leaves(
    tmp_path,
):
    """Run A re-ingests days 1..4 (late lines have landed on day 3) and cleans them; run B, started at
    the same moment, cleans days 2..5 from whichever raw version it finds. Afterwards the pair holds
    exactly what a run alone gives from the final raw, and no quarantine row is lost or left over."""
    start = date(2026, 3, 1)
    env, first, last, store = _materialized_lake(tmp_path, start, 5, users=300)
    day3 = tmp_path / "data" / "landing" / f"date={start + timedelta(days=2)}" / "events.jsonl"
    lines = day3.read_text().splitlines()
    day3.write_text(
        "\n".join(
            lines + [line.replace('"event_id":"', '"event_id":"late-', 1) for line in lines[:40]]
        )
        + "\n"
    )
    runs = [
        _materialize(
            env, "raw_events," + CLEANED, start, start + timedelta(days=3), tmp_path / "a.log"
        ),
        _materialize(env, CLEANED, start + timedelta(days=1), last, tmp_path / "b.log"),
    ]
    for run, log in zip(runs, ("a.log", "b.log")):
        assert run.wait(timeout=900) == 0, (tmp_path / log).read_text()[-3000:]
    together = _published_pair(store, first, last)
    assert store.row_count("quarantined_events") == len(together[1])
    assert sum(event_id.startswith("late-") for _, event_id in together[0]) > 0

    alone = _materialize(env, CLEANED, first, last, tmp_path / "alone.log")
    assert alone.wait(timeout=900) == 0, (tmp_path / "alone.log").read_text()[-3000:]
    assert _published_pair(store, first, last) == together
