"""The whole graph on a small landed window, as a user runs it: `lakehouse generate`, then
`dagster asset materialize` of every asset but maintenance. The local lake is built once per session
(`local_lake` in conftest); the cluster profile's tests land the same window and compare against it.
"""

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

from lakehouse.config import REPO_ROOT
from lakehouse.tables.storage import DeltaStore
from resources.instance import write_instance_config

BIN = Path(sys.executable).parent
START, DAYS, USERS = date(2026, 3, 1), 10, 300
DRIFT_FROM = START + timedelta(days=5)
# More of every problem than the defaults, so that a small window shows each of them.
PROBLEMS = ["--drift-from", DRIFT_FROM.isoformat(), "--malformed-rate", "0.01", "--late-rate", "0.05", "--clock-skew-rate", "0.05", "--duplicate-rate", "0.02"]
# Every table the graph writes (the served-feature log is written by serving, not by the graph).
GRAPH_TABLES = (
    "raw_events", "cleaned_events", "quarantined_events", "user_features", "category_features", "training_labels",
    "daily_active_users", "daily_active_users_by_platform", "daily_funnel", "daily_revenue", "daily_revenue_by_platform",
    "experiment_conversion", "weekly_retention",
)


def run_command(env, *args, check=True):
    result = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def lake_env(data: Path, **settings: str) -> dict:
    """The environment of a lake under `data`: its own Dagster instance, written for the profile `settings` name."""
    env = os.environ | {"LAKEHOUSE_DATA_DIR": str(data), "DAGSTER_HOME": str(data / "dagster_home"), "SPARK_LOCAL_IP": "127.0.0.1"} | settings
    write_instance_config(data / "dagster_home", env)
    return env


def land_and_materialize(env, start=START, days=DAYS):
    run_command(env, BIN / "lakehouse", "generate", "--start", start.isoformat(), "--days", str(days), "--users", str(USERS), *PROBLEMS)
    end = start + timedelta(days=days - 1)
    return run_command(env, BIN / "dagster", "asset", "materialize", "-f", "definitions.py", "--select", "not group:maintenance", "--partition-range", f"{start}...{end}")


def build_local_lake(data: Path) -> SimpleNamespace:
    env = lake_env(data)
    land_and_materialize(env)
    store = DeltaStore(str(data / "delta"))
    # Later tests add days and rematerialize: what the first run made stays readable at these versions.
    return SimpleNamespace(data=data, env=env, versions={name: store.version(name) for name in GRAPH_TABLES})
