"""The cluster profile's servers, as `make cluster-up` starts them: each does its real job, behind its
credentials, on 127.0.0.1 only, and `make cluster-down` stops them all.

The stack starts once for the session (`cluster_stack`, tests/cluster_servers.py), about 30 s.
"""

import concurrent.futures
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import psutil
import psycopg2
import psycopg2.sql
import pyarrow as pa
import pytest
import redis
import requests
from botocore.exceptions import ClientError
from deltalake import DeltaTable, write_deltalake
from mlflow.tracking import MlflowClient

from cluster_servers import free_block, postgres, running, start_stopped, stop_server, storage_options
from lakehouse.config import REPO_ROOT
from lakehouse.tables.storage import DeltaStore

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _append(uri: str, options: dict, writer: int, appends: int) -> None:
    for i in range(appends):
        write_deltalake(uri, pa.table({"writer": [writer], "i": [i]}), mode="append", storage_options=options)


def test_the_object_store_keeps_every_concurrent_delta_commit_and_refuses_a_wrong_key(cluster_stack):
    settings = cluster_stack["settings"]
    options = storage_options(settings)
    uri = f"s3://lakehouse/test/{uuid.uuid4().hex}"
    write_deltalake(uri, pa.table({"writer": pa.array([], pa.int64()), "i": pa.array([], pa.int64())}), storage_options=options)
    # 4 writers x 5 appends race for the same versions: the store's conditional PUT lets exactly one
    # win each version and the others retry, so all 20 land (a plain-PUT store loses some silently).
    # Separate processes (spawned: delta-rs's runtime does not survive a fork), as separate writers are.
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_append, [uri] * 4, [options] * 4, range(4), [5] * 4))
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 20
    assert sorted(zip(*table.to_pyarrow_table().to_pydict().values())) == [(w, i) for w in range(4) for i in range(5)]
    with pytest.raises(Exception, match="(?i)signature|forbidden|denied|403"):
        DeltaTable(uri, storage_options=storage_options(settings, secret="not-the-secret")).version()


def test_postgres_holds_the_profile_databases_behind_its_password(cluster_stack):
    settings = cluster_stack["settings"]
    for database in ("mlflow", "dagster", "feast"):
        with postgres(settings, database) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT current_database()")
            assert cursor.fetchone() == (database,)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(f"{settings['LAKEHOUSE_PG_URL']}/feast", password="wrong")


def test_redis_answers_only_with_its_password(cluster_stack):
    settings = cluster_stack["settings"]
    host, port = settings["LAKEHOUSE_REDIS"].split(":")
    client = redis.Redis(host=host, port=int(port), password=settings["LAKEHOUSE_REDIS_PASSWORD"])
    client.set("lakehouse:probe", "1")
    assert client.get("lakehouse:probe") == b"1"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=int(port)).get("lakehouse:probe")


def test_the_mlflow_server_keeps_runs_in_postgres_and_artifacts_on_the_object_store(cluster_stack, tmp_path):
    settings = cluster_stack["settings"]
    client = MlflowClient(settings["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"probe-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "alpha", "0.5")
    (tmp_path / "note.txt").write_text("served by the tracking server")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))  # proxied: the client holds no S3 key
    with postgres(settings, "mlflow") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT value FROM params WHERE run_uuid = %s AND key = 'alpha'", (run.info.run_id,))
        assert cursor.fetchone() == ("0.5",)
    s3 = boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"], aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"], region_name=settings["AWS_REGION"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lakehouse", Prefix="mlflow/").get("Contents", [])]
    (key,) = [k for k in keys if run.info.run_id in k and k.endswith("note.txt")]
    assert s3.get_object(Bucket="lakehouse", Key=key)["Body"].read() == b"served by the tracking server"
    with pytest.raises(ClientError):
        boto3.client("s3", endpoint_url=settings["AWS_ENDPOINT_URL"], aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key="wrong", region_name=settings["AWS_REGION"]).list_objects_v2(Bucket="lakehouse")


def test_every_server_listens_on_loopback_only(cluster_stack):
    listening = {}
    for name, pid in running(cluster_stack).items():
        process = psutil.Process(pid)
        for member in [process, *process.children(recursive=True)]:
            for connection in member.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    listening.setdefault(name, set()).add(connection.laddr.ip)
    assert set(listening) == set(running(cluster_stack))  # every server listens somewhere
    assert {name: ips - {"127.0.0.1", "::ffff:127.0.0.1"} for name, ips in listening.items()} == {name: set() for name in listening}


def test_feast_on_the_cluster_profile_serves_from_redis_what_the_offline_store_holds_and_survives_redis_stopping(cluster_stack, tmp_path, monkeypatch):
    import numpy as np
    from synthetic_features import land_feature_days

    from lakehouse.features.feature_store import OnlineLoadError, apply_definitions, config_file, materialize_incremental, online_offline_mismatches, open_store

    settings = cluster_stack["settings"]
    root = f"s3://lakehouse/test/{uuid.uuid4().hex}/delta"
    # A project of its own: the registry and Redis are the session's, which the whole graph may use first.
    project = f"cluster_test_{uuid.uuid4().hex[:8]}"
    for key, value in {**settings, "LAKEHOUSE_DELTA_ROOT": root, "LAKEHOUSE_DATA_DIR": str(tmp_path), "LAKEHOUSE_FEAST_PROJECT": project}.items():
        monkeypatch.setenv(key, value)
    delta = DeltaStore(root, storage_options=storage_options(settings))
    rng = np.random.default_rng(3)
    land_feature_days(delta, rng, rng.gamma(2.0, 0.4, 60), range(0, 3))

    store = open_store(tmp_path)
    assert sorted(apply_definitions(store)) == ["category_activity", "user_activity"]
    newest = max(delta.read_arrow("user_features", columns=["feature_ts"])["feature_ts"].to_pylist())
    assert materialize_incremental(store, newest) is not None
    compared, mismatches = online_offline_mismatches(store)  # Redis against the Delta tables on the object store
    assert compared > 0 and mismatches == []

    # feast serve, on the same rendered config: the registry from PostgreSQL, the values from Redis.
    latest = delta.read_arrow("user_features").to_pandas()
    latest = latest[latest["feature_ts"] == latest["feature_ts"].max()].set_index("user_id").sort_index().head(5)
    port = free_block(1)
    server = subprocess.Popen([Path(sys.executable).parent / "feast", "-c", str(REPO_ROOT / "feature_repo"), "-f", str(config_file(tmp_path)),
                               "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log"],
                              env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(240):
            try:
                response = requests.post(f"http://127.0.0.1:{port}/get-online-features", timeout=5,
                                         json={"features": ["user_activity:purchases_30d"], "entities": {"user_id": latest.index.tolist()}})
                break
            except requests.ConnectionError:
                assert server.poll() is None, "feast serve exited"
                time.sleep(0.5)
        response.raise_for_status()
        body = response.json()
        served = dict(zip(body["metadata"]["feature_names"], (r["values"] for r in body["results"])))
        assert served["purchases_30d"] == latest["purchases_30d"].tolist()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    # Nothing secret in the rendered config, nor in the registry Feast keeps in PostgreSQL.
    secrets = [settings[k] for k in ("AWS_SECRET_ACCESS_KEY", "LAKEHOUSE_PG_PASSWORD", "LAKEHOUSE_REDIS_PASSWORD")]
    assert not any(s in config_file(tmp_path).read_text() for s in secrets)
    with postgres(settings, "feast") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        dump = b""
        for (table,) in cursor.fetchall():
            cursor.execute(psycopg2.sql.SQL("SELECT * FROM {}").format(psycopg2.sql.Identifier(table)))
            dump += repr(cursor.fetchall()).encode()
    assert root.encode() in dump or b"user_features" in dump  # the registry is there
    assert not any(s.encode() in dump for s in secrets)

    # Redis stops: the next load fails and says so, the offline tables are untouched, and once Redis is
    # back the load takes the same window again.
    land_feature_days(delta, rng, rng.gamma(2.0, 0.4, 60), range(3, 4))
    versions = {name: delta.version(name) for name in ("user_features", "category_features")}
    newest = max(delta.read_arrow("user_features", columns=["feature_ts"])["feature_ts"].to_pylist())
    stop_server(cluster_stack, "redis")
    try:
        with pytest.raises(OnlineLoadError, match=r"into the online store \(redis\) failed: ConnectionError.*offline tables are unchanged"):
            materialize_incremental(store, newest)
    finally:
        start_stopped(cluster_stack)
    assert {name: delta.version(name) for name in versions} == versions
    assert materialize_incremental(store, newest) is not None
    compared, mismatches = online_offline_mismatches(store)
    assert compared > 0 and mismatches == []


# Faults. Each stops a server the way a crash or an operator does, checks what a user would be left
# with, and starts it again (`scripts/cluster.py up` starts whatever is not running).

# A Spark job of the lakehouse's own: its session (get_spark, S3A settings from the environment) on the
# standalone master, committing through DeltaStore.write_spark to an s3:// URI, slowly enough (a sleep
# per row, 3 s per task, four tasks per core) to lose a worker in the middle. It runs in its own process,
# as a job does: this test process may already hold a local SparkSession.
SLOW_SPARK_JOB = """
import json, sys, time
from pyspark.sql import functions as F, types as T
from lakehouse.engines.spark import get_spark
from lakehouse.tables.schemas import Col, TableSchema
from lakehouse.tables.storage import DeltaStore

schema = TableSchema("slow", "rows a slow job wrote", (Col("id", "long", "a row"), Col("bucket", "long", "id % 4")), partition_by=("bucket",))
spark = get_spark()
slow = F.udf(lambda i: time.sleep(0.1) or i, T.LongType())
rows = spark.range(0, 240, numPartitions=8).select(slow("id").alias("id"), (F.col("id") % 4).alias("bucket"))
version = DeltaStore(sys.argv[1]).write_spark(schema, rows, inputs={"upstream": 4}, properties={"lakehouse.batch_id": "b-1"})
print(json.dumps({"version": version, "master": spark.sparkContext.master}), flush=True)
"""


def _executors_by_worker(settings: dict) -> dict[int, int]:
    """Running executors per worker port, from the master's status page."""
    master_ui = int(settings["LAKEHOUSE_SPARK_MASTER"].rsplit(":", 1)[1]) + 1
    status = requests.get(f"http://127.0.0.1:{master_ui}/json/", timeout=5).json()
    counts = {w["port"]: 0 for w in status["workers"] if w["state"] == "ALIVE"}
    for worker in status["workers"]:
        if worker["state"] == "ALIVE" and worker["coresused"]:
            counts[worker["port"]] = worker["coresused"]
    return counts


def test_a_spark_job_whose_worker_is_killed_finishes_on_the_other_worker_and_commits_to_the_object_store(cluster_stack):
    settings = cluster_stack["settings"]
    root = f"s3://lakehouse/test/{uuid.uuid4().hex}"
    env = {**cluster_stack["env"], **settings, "SPARK_LOCAL_IP": "127.0.0.1"}
    job = subprocess.Popen([sys.executable, "-c", SLOW_SPARK_JOB, root], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while sum(1 for cores in _executors_by_worker(settings).values() if cores) < 2:  # running on both workers
            assert job.poll() is None, job.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the job never ran on both workers"
            time.sleep(0.5)
        time.sleep(3)  # tasks under way on both
        stop_server(cluster_stack, "spark-worker-2", signal.SIGKILL)  # the worker and its executor: a machine lost
        out, err = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
        start_stopped(cluster_stack)
    assert job.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"version": 0, "master": settings["LAKEHOUSE_SPARK_MASTER"]}
    # delta-rs reads what the job committed at the same s3:// URI: every row once (the lost tasks ran
    # again), and what the commit recorded.
    store = DeltaStore(root, storage_options=storage_options(settings))
    assert sorted(store.read_arrow("slow")["id"].to_pylist()) == list(range(240))
    assert store.commit_inputs("slow", 0) == {"upstream": 4} and store.commit_info("slow", 0)["lakehouse.batch_id"] == "b-1"


# Appends one row per commit, `n` commits, and says which it committed.
APPENDER = """
import sys
import pyarrow as pa
from deltalake import write_deltalake
uri, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    write_deltalake(uri, pa.table({"i": pa.array([i], pa.int64()), "pad": pa.array(["x" * 1000])}), mode="append")
    print(i, flush=True)
"""


def test_commits_while_the_object_store_is_stopped_are_retried_or_fail_without_publishing_half(cluster_stack):
    settings = cluster_stack["settings"]
    uri = f"s3://lakehouse/test/{uuid.uuid4().hex}"
    env = {**cluster_stack["env"], **settings}
    writer = subprocess.Popen([sys.executable, "-c", APPENDER, uri, "30"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "0"  # the table exists; commits are under way
        stop_server(cluster_stack, "seaweedfs")
        time.sleep(5)
    finally:
        start_stopped(cluster_stack)
    out, err = writer.communicate(timeout=600)
    committed = [0, *map(int, out.split())]

    table = DeltaTable(uri, storage_options=storage_options(settings))
    rows = sorted(table.to_pyarrow_table(columns=["i"])["i"].to_pylist())
    # Whatever happened to the writer, the table holds each commit it reported, once, and nothing half
    # written: one row per version, no gaps.
    assert rows == sorted(set(rows)) and set(committed) <= set(rows)
    assert table.version() == len(rows) - 1
    if writer.returncode == 0:
        assert rows == list(range(30))  # retried through the outage
    else:
        # Stopped with an error after its last reported commit; at most the commit it was making when the
        # store went away landed whole without the writer hearing of it.
        assert "Traceback" in err and rows == list(range(len(rows))) and len(rows) - len(committed) <= 1
    write_deltalake(uri, pa.table({"i": pa.array([99], pa.int64()), "pad": pa.array(["y"])}), mode="append", storage_options=storage_options(settings))
    assert DeltaTable(uri, storage_options=storage_options(settings)).version() == len(rows)
