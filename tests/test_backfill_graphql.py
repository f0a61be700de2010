"""A 30-day backfill launched as the UI does: GraphQL `launchPartitionBackfill` on `dagster dev`, daemon running."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from conftest import free_port, wait_for_http
from lakehouse.config import REPO_ROOT
from lakehouse.events.vocabulary import EVENT_NAMES, MAX_LATENESS
from lakehouse.tables.storage import DeltaStore
from test_definitions import dbt_model_docs

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
START, DAYS = date(2026, 4, 1), 30

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidSubsetError { message }
  }
}
"""
DESCRIPTIONS = """
query Descriptions { assetNodes { assetKey { path } description groupName } }
"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs(limit: 100) { runId status } }
  }
}
"""


def _event_dates(landing: Path, first: date, last: date) -> set[date]:
    """UTC dates in [first, last] of the landed events with a known name, each at its server-corrected
    time received_at - (sent_at - timestamp) and at most 3 days before the day it landed, worked
    out here with the standard library alone."""
    found = set()
    for path in landing.glob("date=*/*.jsonl"):
        ingested = date.fromisoformat(path.parent.name.removeprefix("date="))
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                event = json.loads(line.lstrip("\ufeff"))
                ts, sent, received = (datetime.fromisoformat(event[k].replace("Z", "+00:00")) for k in ("timestamp", "sent_at", "received_at"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if event.get("event_name") in EVENT_NAMES and event.get("event_id"):
                day = (received - (sent - ts)).astimezone(timezone.utc).date()
                if first <= day <= last and ingested - MAX_LATENESS <= day <= ingested:  # later is quarantined
                    found.add(day)
    return found


def _graphql(url, query, variables):
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def test_thirty_day_backfill_through_graphql_runs_once_per_asset_and_accounts_for_every_line(tmp_path):
    data = tmp_path / "data"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = os.environ | {"LAKEHOUSE_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
    subprocess.run([BIN / "lakehouse", "generate", "--start", START.isoformat(), "--days", str(DAYS), "--users", "60"], env=env, check=True, capture_output=True)

    port = free_port()
    server = subprocess.Popen(
        [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=open(tmp_path / "dev.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/server_info", server, timeout=180, what="dagster dev")

        partitions = [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]
        params = {
            "partitionNames": partitions,
            "assetSelection": [{"path": ["raw_events"]}, {"path": ["cleaned_events"]}, {"path": ["quarantined_events"]}],
        }
        for _ in range(30):  # the code location may still be loading
            launched = _graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
            if launched["__typename"] == "LaunchBackfillSuccess":
                break
            time.sleep(3)
        assert launched["__typename"] == "LaunchBackfillSuccess", launched

        # What a data engineer reads in the UI for each metric is its dbt schema.yml definition.
        nodes = {"/".join(n["assetKey"]["path"]): n for n in _graphql(url, DESCRIPTIONS, {})["assetNodes"]}
        for name, model in dbt_model_docs().items():
            assert nodes[name]["description"].startswith(model["description"].strip()), name
            assert nodes[name]["groupName"] == "metrics"

        deadline = time.monotonic() + 900
        while True:
            backfill = _graphql(url, STATUS, {"id": launched["backfillId"]})["partitionBackfillOrError"]
            if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
                break
            assert time.monotonic() < deadline, backfill
            time.sleep(5)
        assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), (backfill, (tmp_path / "dev.log").read_text()[-4000:])
        # Single-run backfill policy: one run for raw_events, one for cleaned_events (+ quarantine), not one per day.
        assert 1 <= len(backfill["runs"]) <= 2 and all(r["status"] == "SUCCESS" for r in backfill["runs"])
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    store = DeltaStore(str(data / "delta"))
    days = [START + timedelta(days=i) for i in range(DAYS)]
    raw = store.daily_rows("raw_events", "ingest_date")
    assert sorted(raw) == days
    cleaned = store.daily_rows("cleaned_events", "event_date")
    quarantined = store.daily_rows("quarantined_events", "event_date")
    # The backfill also rebuilt the event dates before the window that its first ingest dates feed
    # (late events, up to 3 days): the dates come from the landed lines' own times.
    assert set(cleaned) == _event_dates(data / "landing", START - timedelta(days=3), days[-1])
    assert set(days) <= set(cleaned)
    # Every landed line is in exactly one of the two tables.
    assert sum(raw.values()) == sum(cleaned.values()) + sum(quarantined.values())
