"""The cluster profile against the local one, and the Spark cluster with one worker against two.

Starts its own cluster (`scripts/cluster.py up`, a temporary data dir, ports from
LAKEHOUSE_CLUSTER_PORT, default 19300) and stops it at the end. Then, in one run:
1. Lands a window once and runs the demo's materialization (`dagster asset materialize --select
   'not group:maintenance'`) on it twice: on the local profile (DuckDB in process, Delta on local
   disk, SQLite) and on the cluster profile (Spark standalone, Delta on the object store, PostgreSQL,
   the MLflow server, Redis). Prints both times, their ratio and each run's steps; then what the
   cluster lake holds per unit: bytes per row and per file on the object store, Redis's memory.
2. The same Spark job, the cleaning of that window's raw_events on the object store committed as a
   scratch table, as one application with one executor core (one worker) and with two (both
   workers), and on the window's first half with one core. Prints events/s per core, the speed-up,
   and the marginal rate of one core (the extra events over the extra time, fixed costs aside).
3. That job on two workers, timed from the outside (the application's start-up included), with the
   stack's JIT setting (the client compiler only, scripts/cluster.py SPARK_DEFAULTS) against the
   JVM's default (tiered, up to the optimizing compiler). Prints both and their ratio.

Usage: .venv/bin/python bench/cluster.py [--days 14] [--users 3000]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
from materialize_demo import BIN, REPO, run_measured

from resources.instance import write_instance_config

# One application, cleaning the window's raw_events and committing the result: the transform of
# cleaned_events on the Spark cluster, without Dagster around it.
SPARK_JOB = """
import sys, time
from datetime import date
from lakehouse.engines import engine_named
from lakehouse.tables.schemas import CLEANED_EVENTS, TableSchema
from lakehouse.tables.storage import DeltaStore
from lakehouse.transforms.cleaning import clean_events
root, start, end, target = sys.argv[1], date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3]), sys.argv[4]
engine = engine_named("spark")
engine.session  # the application and its executors start before the clock does
store = DeltaStore(root)
began = time.perf_counter()
with engine.persisting() as persist:
    result = clean_events(engine.read(store, "raw_events"), start, end, persist)
    schema = TableSchema(target, "scratch", CLEANED_EVENTS.columns, partition_by=CLEANED_EVENTS.partition_by)
    store.write_spark(schema, result.cleaned)
print(time.perf_counter() - began)
"""


def cluster(command: str, env: dict) -> str:
    return subprocess.run(
        [sys.executable, REPO / "scripts" / "cluster.py", command],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def lake(landing: Path, **settings: str) -> tuple[Path, dict]:
    data = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    (data / "landing").symlink_to(landing)
    env = (
        os.environ
        | {
            "LAKEHOUSE_DATA_DIR": str(data),
            "DAGSTER_HOME": str(data / "dagster_home"),
            "SPARK_LOCAL_IP": "127.0.0.1",
        }
        | settings
    )
    write_instance_config(data / "dagster_home", env)
    return data, env


def redis_memory(settings: dict) -> tuple[int, int]:
    import redis

    host, port = settings["LAKEHOUSE_REDIS"].split(":")
    client = redis.Redis(host=host, port=int(port), password=settings["LAKEHOUSE_REDIS_PASSWORD"])
    return client.info("memory")["used_memory"], client.dbsize()


def sizes(settings: dict, redis_before: tuple[int, int]) -> None:
    """What the cluster lake holds per unit: bytes per event on the object store, Redis bytes per entity."""
    from lakehouse.tables.storage import DeltaStore

    options = {
        key: settings[key]
        for key in (
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ALLOW_HTTP",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        )
    }
    store = DeltaStore(settings["LAKEHOUSE_DELTA_ROOT"], storage_options=options)
    for table in ("raw_events", "cleaned_events", "user_features"):
        adds = pa.table(store.table(table).get_add_actions(flatten=True)).to_pydict()
        files, rows, size = len(adds["path"]), sum(adds["num_records"]), sum(adds["size_bytes"])
        print(
            f"{table:<15} {rows:9d} rows in {files:4d} files, {size / 2**20:7.1f} MiB: "
            f"{size / rows:6.1f} bytes per row, {size / files / 2**20:6.2f} MiB per file"
        )
    used, keys = redis_memory(settings)
    users = len(set(store.read_arrow("user_features", columns=["user_id"])["user_id"].to_pylist()))
    print(
        f"Redis: {keys - redis_before[1]} keys, {(used - redis_before[0]) / 2**20:.1f} MiB "
        f"for the online features of {users} users and their categories"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=14)  # training needs two prediction times
    parser.add_argument("--users", type=int, default=3000)
    args = parser.parse_args()

    stack_env = os.environ | {
        "LAKEHOUSE_DATA_DIR": tempfile.mkdtemp(prefix="lakehouse-bench-cluster-"),
        "LAKEHOUSE_CLUSTER_PORT": os.environ.get("LAKEHOUSE_CLUSTER_PORT", "19300"),
    }
    began = time.monotonic()
    cluster("up", stack_env)
    print(f"cluster up in {time.monotonic() - began:.0f} s")
    try:
        settings = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in cluster("env", stack_env).splitlines()
        )
        settings["LAKEHOUSE_DELTA_ROOT"] = f"s3://lakehouse/bench-{uuid.uuid4().hex[:8]}/delta"
        landing = Path(tempfile.mkdtemp(prefix="lakehouse-bench-landing-"))
        start = date(2026, 10, 1)
        end = start + timedelta(days=args.days - 1)
        subprocess.run(
            [
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
            ],
            check=True,
        )
        lines = sum(1 for f in landing.glob("date=*/*.jsonl") for _ in f.open())
        materialize = [
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
        seconds = {}
        redis_before = redis_memory(settings)
        for profile, extra in (("local", {}), ("cluster", settings)):
            data, env = lake(landing, **extra)
            seconds[profile], peak = run_measured(materialize, env, data / "materialize.log")
            print(
                f"demo materialization on the {profile:<7} profile: {seconds[profile]:7.1f} s  "
                f"{lines / seconds[profile]:8.0f} events/s  "
                f"(peak RSS of its process tree {peak:.0f} MiB)"
            )
            steps = re.findall(
                r'Finished execution of step "(\w+)" in ([\d.]+m?[\d.]*s)',
                (data / "materialize.log").read_text(),
            )
            print("  steps: " + ", ".join(f"{step} {took}" for step, took in steps))
        print(
            f"events landed: {lines} ({args.days} days, {args.users} users); "
            f"cluster / local time: {seconds['cluster'] / seconds['local']:.2f}x"
        )
        sizes(settings, redis_before)

        # The job on the whole window with one core and with two, and on its first half with one core: the
        # difference of the two one-core runs is the cost of the extra events without the fixed costs.
        half_end = start + timedelta(days=args.days // 2 - 1)
        half_lines = sum(
            1
            for f in landing.glob("date=*/*.jsonl")
            if f.parent.name <= f"date={half_end}"
            for _ in f.open()
        )
        env = os.environ | settings | {"SPARK_LOCAL_IP": "127.0.0.1"}
        job = {}
        for cores, last, events in ((1, end, lines), (2, end, lines), (1, half_end, half_lines)):
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    SPARK_JOB,
                    settings["LAKEHOUSE_DELTA_ROOT"],
                    str(start),
                    str(last),
                    f"scratch_{cores}_{last}",
                ],
                env=env | {"PYSPARK_SUBMIT_ARGS": f"--conf spark.cores.max={cores} pyspark-shell"},
                cwd=REPO,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            job[cores, last] = float(out.strip().splitlines()[-1])
            print(
                f"cleaning job, {events} events, on {cores} worker{'s' if cores > 1 else ''} "
                f"(1 core each): {job[cores, last]:6.1f} s  "
                f"{events / job[cores, last] / cores:8.0f} events/s per core"
            )
        print(f"speed-up with 2 workers: {job[1, end] / job[2, end]:.2f}x")
        marginal = (lines - half_lines) / (job[1, end] - job[1, half_end])
        print(
            f"one core, marginal: {marginal:.0f} events/s ({lines - half_lines} more events "
            f"took {job[1, end] - job[1, half_end]:.1f} s more)"
        )

        jit = {}
        for name, options in (
            ("client compiler only (the stack's)", ""),
            ("tiered (the JVM's default)", "-XX:TieredStopAtLevel=4"),
        ):
            overrides = (
                f"--conf spark.driver.extraJavaOptions={options} --conf spark.executor.extraJavaOptions={options} "
                if options
                else ""
            )
            began = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    SPARK_JOB,
                    settings["LAKEHOUSE_DELTA_ROOT"],
                    str(start),
                    str(end),
                    f"scratch_jit_{len(jit)}",
                ],
                env=env | {"PYSPARK_SUBMIT_ARGS": overrides + "pyspark-shell"},
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            jit[name] = time.perf_counter() - began
            print(
                f"cleaning job, {lines} events, 2 workers, whole application, JIT {name}: {jit[name]:6.1f} s"
            )
        stack, default = jit.values()
        print(f"JIT: the JVM's default takes {default / stack:.2f}x the stack's time")
    finally:
        subprocess.run(
            [sys.executable, REPO / "scripts" / "cluster.py", "down", "--purge"],
            env=stack_env,
            check=False,
            capture_output=True,
        )


if __name__ == "__main__":
    main()
