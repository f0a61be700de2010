"""Time `make demo`'s materialization at the default size; print events per second and peak memory.

Lands the default window (30 days, 3,000 users) into a fresh temporary data directory, runs the
same `dagster asset materialize --select 'not group:maintenance'` command as the demo, and samples the resident memory
of the whole process tree (Python and the Spark JVM) while it runs. As a reference measured in the
same run, it times the floor cost of touching the data with Spark once (start a session, parse the
landed JSON, write one Delta table), and reports the materialization as a multiple of that.
Usage: .venv/bin/python bench/materialize_demo.py [--days 30] [--users 3000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

REFERENCE_JOB = """
import sys
from lakehouse.engines.spark import get_spark
spark = get_spark()
df = spark.read.json(sys.argv[1] + "/date=*/*.jsonl")
df.write.format("delta").mode("overwrite").save(sys.argv[2])
print(spark.read.format("delta").load(sys.argv[2]).count())
"""


def run_measured(command: list[str], env: dict, log: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MiB summed over the process tree."""
    peak = 0.0
    began = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            root = psutil.Process(proc.pid)
            while not done.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20)
                except psutil.Error:
                    pass
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    if code != 0:
        sys.exit(f"{' '.join(command)} failed, see {log}")
    return time.monotonic() - began, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=3000)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    (data / "dagster_home").mkdir()
    (data / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = os.environ | {"LAKEHOUSE_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home"), "SPARK_LOCAL_IP": "127.0.0.1"}
    start = date(2026, 10, 1)
    end = start + timedelta(days=args.days - 1)
    subprocess.run([BIN / "lakehouse", "generate", "--start", str(start), "--days", str(args.days), "--users", str(args.users)], env=env, check=True)
    lines = sum(1 for f in (data / "landing").glob("date=*/*.jsonl") for _ in f.open())

    ref_seconds, ref_peak = run_measured([sys.executable, "-c", REFERENCE_JOB, str(data / "landing"), str(data / "reference")], env, data / "reference.log")
    seconds, peak = run_measured(
        [str(BIN / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", "not group:maintenance", "--partition-range", f"{start}...{end}"],
        env,
        data / "materialize.log",
    )
    steps = re.findall(r'Finished execution of step "(\w+)" in ([\d.]+m?[\d.]*s)', (data / "materialize.log").read_text())

    print(f"events landed:            {lines} lines ({args.days} days, {args.users} users)")
    print(f"materialize (all assets): {seconds:8.1f} s   {lines / seconds:10.0f} events/s   peak RSS {peak:7.0f} MiB")
    print(f"reference Spark job:      {ref_seconds:8.1f} s   {lines / ref_seconds:10.0f} events/s   peak RSS {ref_peak:7.0f} MiB")
    print(f"ratio materialize/reference: time {seconds / ref_seconds:.2f}x, peak memory {peak / ref_peak:.2f}x")
    for step, took in steps:
        print(f"  step {step:<28} {took}")
    print(f"(data left in {data})")


if __name__ == "__main__":
    main()
