"""A lake built by the previous release keeps working after the upgrade, with no command to run.

The lake (tests/fixtures/README.md) was built by commit a272bba: tables created without today's table
properties and commit scopes, a Dagster home that the previous release's cluster demo could rewrite
for PostgreSQL, a raw table written before the landing area's append-only rule, and a training run
whose hash uses the form of that time.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from lakehouse.config import REPO_ROOT
from lakehouse.tables.publication import published_quarantine
from lakehouse.tables.storage import TABLE_PROPERTIES, DeltaStore

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
FIXTURE = Path(__file__).parent / "fixtures" / "lake_built_by_a272bba.tar.xz"
BUILT_AT = Path(
    "/tmp/lakehouse-previous-release"
)  # MLflow and Feast recorded absolute paths under it
BIN = Path(sys.executable).parent
FIRST, LAST = date(2026, 3, 1), date(2026, 3, 10)
# What the previous release's `make cluster-demo` left in the one Dagster home both profiles shared.
PREVIOUS_CLUSTER_INSTANCE = (
    "# Written by resources/instance.py for LAKEHOUSE_PROFILE=cluster; "
    "delete this line to keep your own edits.\n"
    """telemetry:
  enabled: false
code_servers:
  local_startup_timeout: 600
storage:
  postgres:
    postgres_db:
      username: lakehouse
      password:
        env: LAKEHOUSE_PG_PASSWORD
      hostname: 127.0.0.1
      port: 5432
      db_name: dagster
"""
)


def _pair(store):
    cleaned = sorted(
        (str(r["event_date"]), r["event_id"])
        for r in store.read_arrow("cleaned_events", columns=["event_date", "event_id"]).to_pylist()
    )
    quarantined = published_quarantine(
        store, FIRST, LAST, columns=["event_date", "source_file", "line_number", "reason"]
    ).to_pylist()
    return cleaned, sorted(
        (str(r["event_date"]), r["source_file"], r["line_number"], r["reason"]) for r in quarantined
    )


def _run(env, *args):
    result = subprocess.run(
        [str(a) for a in args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def test_a_lake_built_by_the_previous_release_keeps_working(tmp_path):
    shutil.rmtree(BUILT_AT, ignore_errors=True)
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(BUILT_AT, filter="data")
    data = BUILT_AT / "data"
    store = DeltaStore(str(data / "delta"))
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "LAKEHOUSE_PROFILE")}
    env |= {
        "LAKEHOUSE_DATA_DIR": str(data),
        "LAKEHOUSE_PARTITIONS_START": FIRST.isoformat(),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    old_run = json.loads(_run(env, BIN / "lakehouse", "runs", "--json"))[0]
    raw_before = store.read_arrow(
        "raw_events", columns=["source_file", "line_number", "raw_line"]
    ).to_pylist()
    pair_before = _pair(store)

    # The previous release's cluster demo took the shared home, and late lines were appended to the last day.
    (data / "dagster_home" / "dagster.yaml").write_text(PREVIOUS_CLUSTER_INSTANCE)
    landed = data / "landing" / f"date={LAST}" / "events.jsonl"
    late = [
        line.replace('"event_id":"', '"event_id":"after-upgrade-', 1)
        for line in landed.read_text().splitlines()[:20]
    ]
    with landed.open("a") as f:
        f.write("".join(line + "\n" for line in late))

    # The local profile, as the README runs it: the profile's home, then the graph over the newest days.
    home = Path(_run(env, BIN / "python", "-m", "resources.instance").strip())
    assert (
        home == data / "dagster_home"
        and "LAKEHOUSE_PROFILE=local" in (home / "dagster.yaml").read_text()
    )
    env["DAGSTER_HOME"] = str(home)
    _run(
        env,
        BIN / "dagster",
        "asset",
        "materialize",
        "-f",
        "definitions.py",
        "--select",
        "not group:maintenance",
        "--partition-range",
        f"2026-03-08...{LAST}",
    )

    # Raw kept every line it had and added the appended ones.
    raw_after = store.read_arrow(
        "raw_events", columns=["source_file", "line_number", "raw_line"]
    ).to_pylist()
    added = Counter(map(json.dumps, raw_after)) - Counter(map(json.dumps, raw_before))
    assert not Counter(map(json.dumps, raw_before)) - Counter(map(json.dumps, raw_after))
    assert sorted(json.loads(row)["raw_line"] for row in added.elements()) == sorted(late)
    # The pair: the old dates untouched, the appended events published, the old publications still found.
    cleaned, quarantined = _pair(store)
    assert [c for c in cleaned if c[0] < "2026-03-07"] == [
        c for c in pair_before[0] if c[0] < "2026-03-07"
    ]
    assert [q for q in quarantined if q[0] < "2026-03-07"] == [
        q for q in pair_before[1] if q[0] < "2026-03-07"
    ]
    assert {event_id for _, event_id in cleaned} - {event_id for _, event_id in pair_before[0]} == {
        json.loads(line)["event_id"] for line in late
    }
    for table in ("raw_events", "cleaned_events", "quarantined_events", "user_features"):
        assert store.table(table).metadata().configuration.items() >= TABLE_PROPERTIES.items(), (
            table
        )

    # The Dagster home kept its history, and the run logged by the previous release still reproduces.
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) >= 2
    for rebuild in ([], ["--rebuild"]):
        out = _run(
            env,
            BIN / "lakehouse",
            "reproduce",
            old_run["run_id"],
            "--out",
            tmp_path / f"set{len(rebuild)}.parquet",
            *rebuild,
        )
        assert old_run["training_set_sha256"] in out
