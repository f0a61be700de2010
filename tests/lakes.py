"""The whole graph on a small landed window, as a user runs it: `lakehouse generate`, then
`dagster asset materialize` of every asset but maintenance. The local lake is built once per test
session, for every worker (`local_lake` in conftest); the cluster profile's tests land the same window
and compare against it.
"""

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

from lakehouse.config import REPO_ROOT
from lakehouse.tables.storage import DeltaStore
from resources.instance import dagster_home, write_instance_config

BIN = Path(sys.executable).parent
START, DAYS, USERS = date(2026, 3, 1), 10, 300
DRIFT_FROM = START + timedelta(days=5)
# More of every problem than the defaults, so that a small window shows each of them.
PROBLEMS = [
    "--drift-from",
    DRIFT_FROM.isoformat(),
    "--malformed-rate",
    "0.01",
    "--late-rate",
    "0.05",
    "--clock-skew-rate",
    "0.05",
    "--duplicate-rate",
    "0.02",
]
# Every table the graph writes (the served-feature log is written by serving, not by the graph).
GRAPH_TABLES = (
    "raw_events",
    "cleaned_events",
    "quarantined_events",
    "user_features",
    "category_features",
    "training_labels",
    "daily_active_users",
    "daily_active_users_by_platform",
    "daily_funnel",
    "daily_revenue",
    "daily_revenue_by_platform",
    "experiment_conversion",
    "weekly_retention",
)


def run_command(env, *args, check=True):
    result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def lake_env(data: Path, write_instance: bool = True, **settings: str) -> dict:
    """The environment of a lake under `data`: its own Dagster instance, in the home of the profile `settings` name."""
    # Partitions start at the first landed day, as a demo lake's do: late lines dated before it have no partition.
    env = (
        {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        | {
            "LAKEHOUSE_DATA_DIR": str(data),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "LAKEHOUSE_PARTITIONS_START": START.isoformat(),
        }
        | settings
    )
    env["DAGSTER_HOME"] = str(dagster_home(env))
    if write_instance:
        write_instance_config(Path(env["DAGSTER_HOME"]), env)
    return env


def land_and_materialize(env, start=START, days=DAYS):
    run_command(
        env,
        BIN / "lakehouse",
        "generate",
        "--start",
        start.isoformat(),
        "--days",
        str(days),
        "--users",
        str(USERS),
        *PROBLEMS,
    )
    end = start + timedelta(days=days - 1)
    return run_command(
        env,
        BIN / "dagster",
        "asset",
        "materialize",
        "-f",
        "definitions.py",
        "--select",
        "not group:maintenance",
        "--partition-range",
        f"{start}...{end}",
    )


def local_lake(data: Path) -> SimpleNamespace:
    """The local lake under `data`, built unless an earlier call (another pytest worker's) built it.

    Later tests add days and rematerialize: what the first run made stays readable at the versions
    recorded in versions.json. The caller holds a lock around this when workers share `data`."""
    built = data / "versions.json"
    if not built.exists():
        # A half-built lake is not built again on top of itself: the first failure is the one to read.
        assert not data.exists(), (
            f"an earlier build of the local lake in {data} failed (see the first test that used it)"
        )
        data.mkdir(parents=True)
        land_and_materialize(lake_env(data))
        store = DeltaStore(str(data / "delta"))
        built.write_text(json.dumps({name: store.version(name) for name in GRAPH_TABLES}))
    # The instance is written once: a test may add to it (the UI tests' run coordinator).
    return SimpleNamespace(
        data=data, env=lake_env(data, write_instance=False), versions=json.loads(built.read_text())
    )
