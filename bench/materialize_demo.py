"""Time `make demo`'s materialization on the local engine against the Spark engine, in one run.

Lands the default window (30 days, 3,000 users) once, then runs the demo's command
(`dagster asset materialize --select 'not group:maintenance'`) twice on the same landed files, each
into a fresh data directory: with LAKEHOUSE_ENGINE=duckdb (the local profile's default) and with
LAKEHOUSE_ENGINE=spark (the reference). It samples the resident memory of each whole process tree
(Python, and the JVM for Spark) and prints both, the speed-up, and each run's slowest steps.
Each step's share of the whole run is printed too; what no step holds (process start, loading the
code, resources, scheduling and recording events) is "outside steps".
Usage: .venv/bin/python bench/materialize_demo.py [--days 30] [--users 3000] [--engines duckdb]
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
                    peak = max(
                        peak, sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
                    )
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


def materialize(
    landed: Path, engine: str, start: date, end: date
) -> tuple[float, float, list[tuple[str, str]]]:
    """Seconds, peak MiB and per-step times of the demo's materialization on `engine`."""
    data = Path(tempfile.mkdtemp(prefix=f"lakehouse-bench-{engine}-"))
    (data / "landing").symlink_to(landed)
    (data / "dagster_home").mkdir()
    (data / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = os.environ | {
        "LAKEHOUSE_DATA_DIR": str(data),
        "DAGSTER_HOME": str(data / "dagster_home"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "LAKEHOUSE_ENGINE": engine,
    }
    command = [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-f",
        "definitions.py",
        "--select",
        "not group:maintenance",
        "--partition-range",
        f"{start}...{end}",
    ]
    seconds, peak = run_measured(command, env, data / "materialize.log")
    steps = re.findall(
        r'Finished execution of step "(\w+)" in ([\d.]+m?[\d.]*s)',
        (data / "materialize.log").read_text(),
    )
    return seconds, peak, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument(
        "--engines", default="duckdb,spark", help="comma-separated, from duckdb and spark"
    )
    args = parser.parse_args()
    engines = args.engines.split(",")

    landing = Path(tempfile.mkdtemp(prefix="lakehouse-bench-landing-"))
    start = date(2026, 10, 1)
    end = start + timedelta(days=args.days - 1)
    generate = [
        BIN / "lakehouse",
        "generate",
        "--landing",
        str(landing),
        "--start",
        str(start),
        "--days",
        str(args.days),
        "--users",
        str(args.users),
    ]
    subprocess.run(generate, check=True)
    lines = sum(1 for f in landing.glob("date=*/*.jsonl") for _ in f.open())

    runs = {engine: materialize(landing, engine, start, end) for engine in engines}
    print(f"events landed: {lines} lines ({args.days} days, {args.users} users)")
    for engine, (seconds, peak, _) in runs.items():
        print(
            f"materialize on {engine:<7} {seconds:8.1f} s   {lines / seconds:10.0f} events/s   "
            f"peak RSS of the process tree {peak:7.0f} MiB"
        )
    if {"duckdb", "spark"} <= set(runs):
        print(
            f"local engine (duckdb) against spark: {runs['spark'][0] / runs['duckdb'][0]:.2f}x "
            f"faster, {runs['duckdb'][1] / runs['spark'][1]:.2f}x the peak memory"
        )
    for engine, (seconds, _, steps) in runs.items():
        timed = [(step, _seconds(took)) for step, took in steps]
        outside = seconds - sum(took for _, took in timed)
        shares = sorted([*timed, ("outside steps", outside)], key=lambda item: -item[1])
        print(
            f"{engine} steps (share of {seconds:.1f} s): "
            + ", ".join(f"{step} {took:.1f} s {took / seconds:.0%}" for step, took in shares)
        )


def _seconds(took: str) -> float:
    """Dagster's step duration ("850ms", "12.3s", "1m3s") in seconds."""
    if took.endswith("ms"):
        return float(took[:-2]) / 1000
    minutes, _, rest = took.rpartition("m")
    return float(minutes or 0) * 60 + float(rest.rstrip("s"))


if __name__ == "__main__":
    main()
