"""The whole lakehouse on the cluster profile: the graph's transformations on the Spark cluster, every
Delta table on the object store, the Dagster instance on PostgreSQL, the MLflow server, Feast on Redis.

The cluster lake lands the same window as the local one (tests/lakes.py) and is compared with it
table by table: the profile changes where things run and live, never the answers.
"""

import json
import os
import signal
import subprocess
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pandas as pd
import pytest
import requests
from cluster_servers import postgres, stack_credentials, storage_options
from conftest import free_port, wait_for_http
from lakes import (
    BIN,
    DAYS,
    GRAPH_TABLES,
    PROBLEMS,
    START,
    USERS,
    lake_env,
    land_and_materialize,
    run_command,
)
from test_definitions import dbt_model_docs

from lakehouse.config import REPO_ROOT
from lakehouse.events.vocabulary import MAX_LATENESS
from lakehouse.ml.fingerprint import content_sha256
from lakehouse.tables.publication import BATCH_KEY
from lakehouse.tables.storage import DeltaStore

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]
# Written per run, so never equal across two runs: which cleaning batch published a quarantined line.
RUN_SPECIFIC = {"quarantined_events": ["batch_id"]}


@pytest.fixture(scope="module")
def cluster_lake(cluster_stack, tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster_lake")
    settings = cluster_stack["settings"] | {
        "LAKEHOUSE_DELTA_ROOT": f"s3://lakehouse/{uuid.uuid4().hex}/delta"
    }
    # The MLflow login in the tracking URI, as a team's URI may carry it (MLflow's client then sends the URI's user
    # info): the credential scan below looks for the password everywhere.
    settings["MLFLOW_TRACKING_URI"] = settings["MLFLOW_TRACKING_URI"].replace(
        "http://",
        f"http://{settings['MLFLOW_TRACKING_USERNAME']}:{settings['MLFLOW_TRACKING_PASSWORD']}@",
    )
    env = lake_env(data, **settings)
    began = time.monotonic()
    land_and_materialize(env)
    print(f"\nthe graph on the cluster profile: {time.monotonic() - began:.0f} s")
    store = DeltaStore(settings["LAKEHOUSE_DELTA_ROOT"], storage_options(settings))
    return SimpleNamespace(
        data=data,
        env=env,
        settings=settings,
        store=store,
        versions={name: store.version(name) for name in GRAPH_TABLES},
    )


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order: sorted on every column but the floating-point ones, which are
    compared with a tolerance (Spark and DuckDB may sum in different orders)."""
    keys = [c for c in frame.columns if not pd.api.types.is_float_dtype(frame[c])]
    return frame.sort_values(
        keys + [c for c in frame.columns if c not in keys], kind="stable"
    ).reset_index(drop=True)


def _rows(store: DeltaStore, name: str, version: int | None) -> pd.DataFrame:
    return _canonical(
        store.table(name, version).to_pandas().drop(columns=RUN_SPECIFIC.get(name, []))
    )


def _tables_under(settings: dict, root: str) -> set[str]:
    bucket, prefix = root.removeprefix("s3://").split("/", 1)
    s3 = boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_REGION"],
    )
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/", Delimiter="/").get(
        "CommonPrefixes", []
    )
    return {p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in listed}


def test_every_table_holds_the_same_rows_as_on_the_local_profile(cluster_lake, local_lake):
    local = DeltaStore(str(local_lake.data / "delta"))
    assert _tables_under(
        cluster_lake.settings, cluster_lake.settings["LAKEHOUSE_DELTA_ROOT"]
    ) >= set(GRAPH_TABLES)
    for name in GRAPH_TABLES:
        expected, actual = (
            _rows(local, name, local_lake.versions[name]),
            _rows(cluster_lake.store, name, cluster_lake.versions[name]),
        )
        assert len(actual) == len(expected) > 0, name
        pd.testing.assert_frame_equal(
            actual, expected, check_exact=False, rtol=1e-9, atol=1e-12, obj=name
        )


def test_a_training_run_is_reproduced_by_run_id_through_the_mlflow_server(cluster_lake, tmp_path):
    env, settings = cluster_lake.env, cluster_lake.settings
    (run,) = json.loads(run_command(env, BIN / "lakehouse", "runs", "--json").stdout)
    assert run["inputs"] == {name: cluster_lake.versions[name] for name in run["inputs"]}
    for flags in (
        [],
        ["--rebuild"],
    ):  # from the snapshot on the object store, then rebuilt from the pinned Delta versions
        out = tmp_path / f"training_set{len(flags)}.parquet"
        result = run_command(
            env, BIN / "lakehouse", "reproduce", run["run_id"], "--out", str(out), *flags
        )
        assert run["training_set_sha256"] in result.stdout
        assert content_sha256(pd.read_parquet(out)) == run["training_set_sha256"]
    with postgres(settings, "mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT artifact_uri FROM runs WHERE run_uuid = %s", (run["run_id"],))
        (artifact_uri,) = cursor.fetchone()
    assert artifact_uri.startswith("mlflow-artifacts:/")  # kept by the server, on the object store


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


def _graphql(url, query, variables):
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


SENSOR = {
    "repositoryName": "__repository__",
    "repositoryLocationName": "lakehouse",
    "sensorName": "late_data_sensor",
}
TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { sensorState { ticks(limit: 1) { status } } } }
}
"""
RUNS = """
query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename ... on Runs { results { runId status } } } }
"""


def _dates_rows(store: DeltaStore, name: str, first: date, last: date) -> pd.DataFrame:
    rows = _rows(store, name, None)
    return rows[(rows["event_date"] >= first) & (rows["event_date"] <= last)].reset_index(drop=True)


def _cleaned_by_duckdb(store: DeltaStore, first: date, last: date) -> pd.DataFrame:
    """cleaned_events of [first, last] computed by the local engine from the cluster's raw_events."""
    from lakehouse.engines.duckdb import DuckDBEngine
    from lakehouse.tables.schemas import CLEANED_EVENTS
    from lakehouse.transforms.cleaning import clean_events

    engine = DuckDBEngine()
    with engine.persisting() as persist:
        cleaned = engine.to_arrow(
            clean_events(engine.read(store, "raw_events"), first, last, persist).cleaned
        ).cast(CLEANED_EVENTS.arrow())
    return _canonical(cleaned.to_pandas())


def test_two_backfills_and_the_late_data_sensor_s_run_write_at_once_land_every_row_and_change_nothing_else(
    cluster_lake,
):
    """Three writers of cleaned_events (and its quarantine) at once, as they meet in production: two
    backfills on adjacent ranges of days, launched together as the UI launches them, and the run the
    late-data sensor requests when two new ingest days land. GraphQL on `dagster dev` (daemon and
    sensors running), with the instance in PostgreSQL. Their runs are Spark applications rebuilding
    the same tables at the same time. Spark writes each run's files and delta-rs commits them with the
    object store's conditional PUT, so a later commit is retried on top of an earlier one, never over it.

    The commit counter: new versions without a gap, each with its own write id, one publication per
    run; every row of the backfilled ranges is there, and the window holds what it held (a rerun is
    idempotent); the sensor's dates hold what the local engine computes from the same raw rows."""
    env, store = cluster_lake.env, cluster_lake.store
    names = ("cleaned_events", "quarantined_events")
    window = (START, START + timedelta(days=DAYS - 1))
    before = {name: _dates_rows(store, name, *window) for name in names}
    versions = {name: store.version(name) for name in names}
    # Two new ingest days, the last one yesterday: the sensor rebuilds the event dates of their late
    # windows, which are in its latest week (the window above, in March, is not).
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    landed = [yesterday - timedelta(days=1), yesterday]
    run_command(
        env,
        BIN / "lakehouse",
        "generate",
        "--start",
        landed[0].isoformat(),
        "--days",
        "2",
        "--users",
        str(USERS),
        *PROBLEMS,
    )
    late = (landed[0] - MAX_LATENESS, yesterday)
    # One executor core per application, so that two run at once on the two workers.
    env = env | {"PYSPARK_SUBMIT_ARGS": "--conf spark.cores.max=1 pyspark-shell"}
    port = free_port()
    server = subprocess.Popen(
        [BIN / "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=open(cluster_lake.data / "dagster-dev.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    # Two adjacent ranges in the middle of the window: their event dates' late windows overlap, so both
    # runs read the same raw rows while they rebuild disjoint dates.
    ranges = [
        [(START + timedelta(days=i)).isoformat() for i in days]
        for days in (range(3, 5), range(5, 7))
    ]
    sensor_runs = {"tags": [{"key": "dagster/sensor_name", "value": "late_data_sensor"}]}
    try:
        wait_for_http(f"{url}/server_info", server, timeout=180, what="dagster dev")
        # What a data engineer reads in the UI for each metric is its dbt schema.yml definition.
        for _ in range(60):  # the code location may still be loading
            nodes = {
                "/".join(n["assetKey"]["path"]): n
                for n in _graphql(url, DESCRIPTIONS, {})["assetNodes"]
            }
            if nodes:
                break
            time.sleep(3)
        for name, model in dbt_model_docs().items():
            assert nodes[name]["description"].startswith(model["description"].strip()), name
            assert nodes[name]["groupName"] == "metrics"
        # The sensor's first evaluation only records the state it starts from: the new days must land after it.
        deadline = time.monotonic() + 180
        while not _graphql(url, TICKS, {"selector": SENSOR})["sensorOrError"]["sensorState"][
            "ticks"
        ]:
            assert time.monotonic() < deadline, "the late-data sensor never ticked"
            time.sleep(3)

        cleaned = [{"path": [name]} for name in names]
        launches = [(days, cleaned) for days in ranges] + [
            ([day.isoformat() for day in landed], [{"path": ["raw_events"]}])
        ]
        launched = [
            _graphql(
                url, LAUNCH, {"params": {"partitionNames": days, "assetSelection": selection}}
            )["launchPartitionBackfill"]
            for days, selection in launches
        ]
        assert all(b["__typename"] == "LaunchBackfillSuccess" for b in launched), launched

        deadline = time.monotonic() + 900
        while True:
            backfills = [
                _graphql(url, STATUS, {"id": b["backfillId"]})["partitionBackfillOrError"]
                for b in launched
            ]
            from_sensor = _graphql(url, RUNS, {"filter": sensor_runs})["runsOrError"]["results"]
            done = all(b["status"] not in ("REQUESTED", "CANCELING", "FAILING") for b in backfills)
            if (
                done
                and from_sensor
                and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in from_sensor)
            ):
                break
            assert time.monotonic() < deadline, (backfills, from_sensor)
            time.sleep(3)
        assert all(b["status"] in ("COMPLETED", "COMPLETED_SUCCESS") for b in backfills), (
            backfills,
            (cluster_lake.data / "dagster-dev.log").read_text()[-4000:],
        )
        # Single-run backfill policy: one run per backfill, not one per day.
        runs = [run for b in backfills for run in b["runs"]]
        assert [len(b["runs"]) for b in backfills] == [1, 1, 1] and all(
            r["status"] == "SUCCESS" for r in runs
        )
        assert all(r["status"] == "SUCCESS" for r in from_sensor), from_sensor
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    # The runs are the instance's, in PostgreSQL.
    with postgres(cluster_lake.settings, "dagster") as connection, connection.cursor() as cursor:
        ids = [r["runId"] for r in runs + from_sensor]
        cursor.execute("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", (ids,))
        assert sorted(cursor.fetchall()) == sorted((run_id, "SUCCESS") for run_id in ids)
    # The commit counter. cleaned_events: one commit per run, each publishing its own range. The quarantine:
    # per run, its batch appended, then the range settled when older rows were there (publication.py).
    for name, version in versions.items():
        new = sorted(
            (info for info in store.history(name) if info["version"] > version),
            key=lambda info: info["version"],
        )
        assert [info["version"] for info in new] == list(
            range(version + 1, version + 1 + len(new))
        ), name
        assert len({info["lakehouse.write_id"] for info in new}) == len(new), (
            name
        )  # each its own write: none overwritten
        pd.testing.assert_frame_equal(_dates_rows(store, name, *window), before[name], obj=name)
    published = sorted(
        (p["start"], p["end"])
        for info in store.history("cleaned_events")
        if info["version"] > versions["cleaned_events"]
        for p in [json.loads(info[BATCH_KEY])]
    )
    by_sensor = [p for p in published if p not in [(days[0], days[-1]) for days in ranges]]
    assert len(published) - len(by_sensor) == 2 and by_sensor, published
    assert all(
        late[0].isoformat() <= first <= last <= late[1].isoformat() for first, last in by_sensor
    ), by_sensor
    assert (
        len(published)
        <= store.version("quarantined_events") - versions["quarantined_events"]
        <= 2 * len(published)
    )
    # What the sensor's run published is what the local engine makes of the same raw rows.
    assert any(
        store.daily_rows("cleaned_events", "event_date").get(day.date())
        for day in pd.date_range(*late)
    )
    pd.testing.assert_frame_equal(
        _dates_rows(store, "cleaned_events", *late),
        _cleaned_by_duckdb(store, *late),
        check_dtype=False,
    )


def _database_dump(settings: dict, database: str) -> bytes:
    import psycopg2.sql

    with postgres(settings, database) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        dump = b""
        for (table,) in cursor.fetchall():
            cursor.execute(
                psycopg2.sql.SQL("SELECT * FROM {}").format(psycopg2.sql.Identifier(table))
            )
            dump += repr(cursor.fetchall()).encode()
    return dump


def test_no_credential_reaches_what_the_lakehouse_records_or_logs(cluster_lake, cluster_stack):
    """After everything above ran on the cluster lake (the graph, the backfills, reproduce), none of
    its credentials is anywhere it keeps or shows things: every credential of the stack (the object
    store's key, read from the environment by delta-rs, Spark, dbt and Feast; the PostgreSQL, Redis and
    MLflow passwords, the latter in the lake's tracking URI too; Spark's shared secret; the servers' own
    keys). Scanned: the MLflow store and its artifacts, the Dagster run storage and event log, the
    Feast registry, every Delta log and object in the lake's bucket, and the logs and files of the
    lake, of dbt, of the servers and of Spark's executors."""
    settings = cluster_lake.settings
    secrets = {
        name: value.encode()
        for name, value in stack_credentials(cluster_stack).items()
        if name != "AWS_ACCESS_KEY_ID"
    }
    places = {
        f"postgres/{database}": _database_dump(settings, database)
        for database in ("mlflow", "dagster", "feast")
    }
    assert (
        b"purchase_propensity" in places["postgres/mlflow"]
        and b"ASSET_MATERIALIZATION" in places["postgres/dagster"]
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_REGION"],
    )
    lake_prefix = settings["LAKEHOUSE_DELTA_ROOT"].removeprefix("s3://lakehouse/").split("/", 1)[0]
    for prefix in (
        "mlflow/",
        lake_prefix + "/",
    ):  # MLflow's artifacts (the training-set snapshot among them), and the lake
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="lakehouse", Prefix=prefix):
            for item in page.get("Contents", []):
                places[f"s3://lakehouse/{item['Key']}"] = s3.get_object(
                    Bucket="lakehouse", Key=item["Key"]
                )["Body"].read()
    assert any("_delta_log" in place for place in places) and any(
        place.startswith("s3://lakehouse/mlflow/") for place in places
    )
    # Files: the lake's (Dagster's compute logs, dbt's, Feast's rendered config), dbt's log, the servers' logs and
    # the executors'. Not the stack's credentials file and the servers' configuration, which hold them by design.
    stack = cluster_stack["data"] / "cluster"
    files = [
        *cluster_lake.data.rglob("*"),
        *(REPO_ROOT / "dbt" / "logs").glob("*.log"),
        *(stack / "logs").glob("*.log"),
        *(stack / "spark" / "work").rglob("*"),
    ]
    for path in files:
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert len(places) > 100
    leaks = {
        place: [name for name, secret in secrets.items() if secret in content]
        for place, content in places.items()
    }
    assert {place: names for place, names in leaks.items() if names} == {}
