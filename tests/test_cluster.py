"""The cluster profile's servers, as `make cluster-up` starts them: each does its real job, behind its
credentials, on 127.0.0.1 only, and `make cluster-down` stops them all.

The stack starts once for the session (`cluster_stack`, tests/cluster_servers.py), about 30 s.
"""

import base64
import concurrent.futures
import contextlib
import http.client
import json
import multiprocessing
import os
import re
import signal
import socket
import struct
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
from cluster_servers import (
    cluster_script,
    free_block,
    postgres,
    running,
    spark_ui,
    stack_credentials,
    start_stopped,
    stop_server,
    storage_options,
)
from deltalake import DeltaTable, write_deltalake
from mlflow.tracking import MlflowClient

from lakehouse.config import REPO_ROOT
from lakehouse.tables.storage import DeltaStore

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _append(uri: str, options: dict, writer: int, appends: int) -> None:
    for i in range(appends):
        write_deltalake(
            uri, pa.table({"writer": [writer], "i": [i]}), mode="append", storage_options=options
        )


def test_the_object_store_keeps_every_concurrent_delta_commit_and_refuses_a_wrong_key(
    cluster_stack,
):
    settings = cluster_stack["settings"]
    options = storage_options(settings)
    uri = f"s3://lakehouse/test/{uuid.uuid4().hex}"
    write_deltalake(
        uri,
        pa.table({"writer": pa.array([], pa.int64()), "i": pa.array([], pa.int64())}),
        storage_options=options,
    )
    # 4 writers x 5 appends race for the same versions: the store's conditional PUT lets exactly one
    # win each version and the others retry, so all 20 land (a plain-PUT store loses some silently).
    # Separate processes (spawned: delta-rs's runtime does not survive a fork), as separate writers are.
    with concurrent.futures.ProcessPoolExecutor(
        4, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        list(pool.map(_append, [uri] * 4, [options] * 4, range(4), [5] * 4))
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 20
    assert sorted(zip(*table.to_pyarrow_table().to_pydict().values())) == [
        (w, i) for w in range(4) for i in range(5)
    ]
    with pytest.raises(Exception, match="(?i)signature|forbidden|denied|403"):
        DeltaTable(
            uri, storage_options=storage_options(settings, secret="not-the-secret")
        ).version()


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


def test_the_mlflow_server_keeps_runs_in_postgres_and_artifacts_on_the_object_store(
    cluster_stack, tmp_path, monkeypatch
):
    settings = cluster_stack["settings"]
    for name in (
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):  # its basic-auth app's login
        monkeypatch.setenv(name, settings[name])
    client = MlflowClient(settings["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"probe-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "alpha", "0.5")
    (tmp_path / "note.txt").write_text("served by the tracking server")
    client.log_artifact(
        run.info.run_id, str(tmp_path / "note.txt")
    )  # proxied: the client holds no S3 key
    with postgres(settings, "mlflow") as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT value FROM params WHERE run_uuid = %s AND key = 'alpha'", (run.info.run_id,)
        )
        assert cursor.fetchone() == ("0.5",)
    s3 = boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_REGION"],
    )
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket="lakehouse", Prefix="mlflow/").get("Contents", [])
    ]
    (key,) = [k for k in keys if run.info.run_id in k and k.endswith("note.txt")]
    assert (
        s3.get_object(Bucket="lakehouse", Key=key)["Body"].read()
        == b"served by the tracking server"
    )
    with pytest.raises(ClientError):
        boto3.client(
            "s3",
            endpoint_url=settings["AWS_ENDPOINT_URL"],
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key="wrong",
            region_name=settings["AWS_REGION"],
        ).list_objects_v2(Bucket="lakehouse")


def test_every_server_listens_on_loopback_only(cluster_stack):
    listening = {}
    for name, pid in running(cluster_stack).items():
        process = psutil.Process(pid)
        for member in [process, *process.children(recursive=True)]:
            for connection in member.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    listening.setdefault(name, set()).add(connection.laddr.ip)
    assert set(listening) == set(running(cluster_stack))  # every server listens somewhere
    assert {name: ips - {"127.0.0.1", "::ffff:127.0.0.1"} for name, ips in listening.items()} == {
        name: set() for name in listening
    }


# Side doors. Every socket that any process of the stack listens on (with an application running, so
# Spark's executors and their Python workers are among them), tried per protocol by a local client that
# holds none of the stack's credentials: none may hand it data or take any. A socket nobody listed is a
# door too. Where a probe could fail for a reason other than the guard, a control with the credential
# shows the same request gets through.

# The stack's ports by offset from LAKEHOUSE_CLUSTER_PORT (README, the cluster profile): who owns each,
# and what speaks there.
LISTED_PORTS = {
    0: ("seaweedfs-s3", "s3"),
    7: ("seaweedfs-s3", "weed-grpc"),
    1: ("seaweedfs-master", "weed-master"),
    2: ("seaweedfs-master", "weed-grpc"),
    3: ("seaweedfs-volume", "weed-volume"),
    4: ("seaweedfs-volume", "weed-grpc"),
    5: ("seaweedfs-filer", "weed-filer"),
    6: ("seaweedfs-filer", "weed-grpc"),
    20: ("postgres", "postgres"),
    21: ("redis", "redis"),
    30: ("spark-master", "spark-rpc"),
    31: ("spark-master", "spark-ui"),
    32: ("spark-worker-1", "spark-rpc"),
    33: ("spark-worker-1", "spark-ui"),
    34: ("spark-worker-2", "spark-rpc"),
    35: ("spark-worker-2", "spark-ui"),
    40: ("mlflow", "mlflow"),
}
# Unix sockets, by the end of their path.
LISTED_SOCKETS = {
    "/seaweedfs/s3.sock": ("seaweedfs-s3", "s3"),
    "/seaweedfs/filer.sock": ("seaweedfs-filer", "weed-filer"),
    "/.s.PGSQL.": ("postgres", "postgres"),
}
# gRPC: one method of each component's service (an empty request is a valid protobuf message).
WEED_GRPC_METHODS = {
    2: "/master_pb.Seaweed/Assign",
    4: "/volume_server_pb.VolumeServer/VolumeServerStatus",
    6: "/filer_pb.SeaweedFiler/GetFilerConfiguration",
    7: "/s3_pb.SeaweedS3IamCache/GetConfiguration",
}
# Answered without credentials, by design: health checks, MLflow's UI bundle and its public capability page.
MLFLOW_PUBLIC = (
    "/health",
    "/static-files/",
    "/favicon.ico",
    "/ajax-api/3.0/mlflow/server-info",
    "/api/3.0/mlflow/server-info",
)

# A Spark application of the stack (its driver reads the stack's spark-defaults.conf): it caches a small
# RDD on the executors and holds them until its stdin closes.
HELD_APPLICATION = """
import json, sys
from lakehouse.engines.spark import get_spark
context = get_spark().sparkContext
cached = context.parallelize(range(100), 2).cache()
cached.count()
print(json.dumps({"app": context.applicationId, "blocks": [f"rdd_{cached.id()}_{i}" for i in range(2)]}), flush=True)
sys.stdin.read()
"""
# An application without the secret: the lakehouse's own session, on the master.
APPLICATION_WITHOUT_SECRET = """
from lakehouse.engines.spark import get_spark
print("counted", get_spark().range(1000).count())
"""
# Spark's own clients in a JVM of their own, asked (on stdin) to reach the master and workers through
# Spark's RPC (the first step of any application, or of a master's order to a worker), without the secret
# and, as a control, with it; and to open an executor's cached blocks without it. Each outcome is
# "answered" or the Java stack trace.
SPARK_RPC_PROBE = """
import json, sys
from pyspark import SparkConf
from pyspark.java_gateway import launch_gateway

asked = json.load(sys.stdin)
gateway = launch_gateway(SparkConf())
jvm = gateway.jvm
spark = jvm.org.apache.spark


def rpc_env(secret):
    conf = spark.SparkConf(False)
    if secret:
        conf.set("spark.authenticate", "true").set("spark.authenticate.secret", secret)
    defaults = spark.SecurityManager
    manager = spark.SecurityManager(
        conf,
        getattr(defaults, "$lessinit$greater$default$2")(),
        getattr(defaults, "$lessinit$greater$default$3")(),
    )
    return spark.rpc.RpcEnv.create("probe", "127.0.0.1", 0, conf, manager, True)


def outcome(call):
    try:
        call()
        return "answered"
    except Exception as exc:
        java = getattr(exc, "java_exception", None)
        if java is None:
            return repr(exc)
        return jvm.org.apache.commons.lang3.exception.ExceptionUtils.getStackTrace(java)


def open_blocks(port, block):
    transport = spark.network.util.TransportConf(
        "shuffle", spark.network.util.MapConfigProvider(jvm.java.util.HashMap())
    )
    context = spark.network.TransportContext(transport, spark.network.server.NoOpRpcHandler())
    client = context.createClientFactory().createClient("127.0.0.1", port)
    ids = gateway.new_array(jvm.java.lang.String, 1)
    ids[0] = block
    client.sendRpcSync(spark.network.shuffle.protocol.OpenBlocks(asked["app"], "0", ids).toByteBuffer(), 10000)


results = {}
outsider, insider = rpc_env(None), rpc_env(asked["secret"])
for endpoint, port in asked["rpc"]:
    address = spark.rpc.RpcAddress("127.0.0.1", port)
    results[f"{endpoint} {port}"] = outcome(lambda: outsider.setupEndpointRef(address, endpoint))
    results[f"{endpoint} {port} (control, with the secret)"] = outcome(
        lambda: insider.setupEndpointRef(address, endpoint)
    )
for port in asked["executors"]:
    for block in asked["blocks"]:
        results[f"executor {port}, block {block}"] = outcome(lambda: open_blocks(port, block))
print(json.dumps(results))
"""


def _listening_sockets(stack: dict) -> dict[str | int, tuple[str, str]]:
    """Port number or Unix socket path -> (server, process name), for every listening socket of every
    process of the stack and of their children."""
    unix_listening = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: a listening socket
            unix_listening[fields[6]] = fields[7] if len(fields) > 7 else "(unnamed)"
    found = {}
    for name, pid in running(stack).items():
        top = psutil.Process(pid)
        for process in [top, *top.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # a child that ended while we looked
                found |= {
                    c.laddr.port: (name, process.name())
                    for c in process.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN
                }
                for fd in Path(f"/proc/{process.pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:[") and target[8:-1] in unix_listening:
                            found[unix_listening[target[8:-1]]] = (name, process.name())
    return found


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _http(
    address: int | str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    timeout: float = 30,
) -> tuple[int, bytes]:
    """One HTTP request to a port on 127.0.0.1 or to a Unix socket: (status, body)."""
    connection = (
        http.client.HTTPConnection("127.0.0.1", address, timeout=timeout)
        if isinstance(address, int)
        else _UnixHTTPConnection(address, timeout)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _through(
    address, attempts: list[tuple[str, str, bytes | None]], headers: dict | None = None
) -> list[str]:
    """Those of the requests (method, path, body) that got a 1xx-3xx answer."""
    got = []
    for method, path, body in attempts:
        status, content = _http(address, method, path, body, headers)
        if status < 400:
            got.append(f"{method} {path}: {status} {content[:80]!r}")
    return got


def _multipart(content: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="outsider.txt"\r\n\r\n'.encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def _protobuf_strings(message: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a protobuf message (enough to read a SeaweedFS AssignResponse)."""
    fields, i = {}, 0
    while i < len(message):
        key, i = _varint(message, i)
        if key & 7 == 2:
            length, i = _varint(message, i)
            fields[key >> 3], i = message[i : i + length], i + length
        elif key & 7 == 0:
            _, i = _varint(message, i)
        else:
            raise ValueError(f"wire type {key & 7}")
    return fields


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        value, shift, i = value | (data[i] & 0x7F) << shift, shift + 7, i + 1
        if data[i - 1] < 0x80:
            return value, i


def _grpc_call(port: int, method: str, credentials=None):
    """A unary gRPC call with an empty request: plain, or over TLS with `credentials`; its status code."""
    import grpc

    channel = (
        grpc.secure_channel(
            f"127.0.0.1:{port}",
            credentials,
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
        if credentials
        else grpc.insecure_channel(f"127.0.0.1:{port}")
    )
    with channel:
        try:
            return grpc.StatusCode.OK, channel.unary_unary(method)(b"", timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), None


def _mlflow_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the MLflow server's Flask and FastAPI apps, path parameters filled in."""
    from mlflow.server import app
    from mlflow.server.fastapi_app import create_fastapi_app

    routes = {
        (method, re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", "probe", rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    for path, operations in create_fastapi_app(app).openapi()["paths"].items():
        routes |= {(method.upper(), re.sub(r"\{[a-z_]+\}", "probe", path)) for method in operations}
    return sorted(routes)


def test_no_socket_of_the_stack_serves_or_takes_data_without_credentials(
    cluster_stack, tmp_path, monkeypatch
):
    import grpc

    settings, creds = cluster_stack["settings"], stack_credentials(cluster_stack)
    base = int(cluster_stack["env"]["LAKEHOUSE_CLUSTER_PORT"])
    doors: dict[str, list[str]] = {}  # where -> what got through
    failed_controls: list[
        str
    ] = []  # a request with the credential that did not get through: the probe beside it proves nothing

    def door(where: str, got) -> None:
        if got:
            doors.setdefault(where, []).extend(got if isinstance(got, list) else [got])

    def control(what: str, passed: bool) -> bool:
        if not passed:
            failed_controls.append(what)
        return passed

    # Data to go after: an object on the store, an MLflow run with an artifact, a Redis key, all written
    # with the credentials.
    s3 = boto3.client(
        "s3",
        endpoint_url=settings["AWS_ENDPOINT_URL"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_REGION"],
    )
    key = f"test/doors-{uuid.uuid4().hex}.txt"
    s3.put_object(Bucket="lakehouse", Key=key, Body=b"kept behind the credentials")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, settings[name])
    mlflow_client = MlflowClient(settings["MLFLOW_TRACKING_URI"])
    run = mlflow_client.create_run(mlflow_client.create_experiment(f"doors-{uuid.uuid4().hex[:8]}"))
    (tmp_path / "snapshot.txt").write_text("a training set")
    mlflow_client.log_artifact(run.info.run_id, str(tmp_path / "snapshot.txt"))
    redis_host, redis_port = settings["LAKEHOUSE_REDIS"].split(":")
    redis.Redis(
        host=redis_host, port=int(redis_port), password=settings["LAKEHOUSE_REDIS_PASSWORD"]
    ).set("lakehouse:doors", "kept")

    # A client without credentials: no AWS keys, no MLflow password, no Spark configuration of the stack's.
    outsider_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "LAKEHOUSE_"))
    }
    outsider_env |= {
        "SPARK_CONF_DIR": str(tmp_path / "no-spark-conf"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "LAKEHOUSE_SPARK_MASTER": settings["LAKEHOUSE_SPARK_MASTER"],
    }
    (tmp_path / "no-spark-conf").mkdir()
    stack_env = {**cluster_stack["env"], **settings, "SPARK_LOCAL_IP": "127.0.0.1"}
    held = subprocess.Popen(
        [sys.executable, "-c", HELD_APPLICATION],
        env=stack_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    without_secret = subprocess.Popen(
        [sys.executable, "-c", APPLICATION_WITHOUT_SECRET],
        env=outsider_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        application = json.loads(held.stdout.readline() or "null")
        assert application, held.stderr.read()[-3000:]
        sockets = _listening_sockets(cluster_stack)

        # Every socket is listed, or is an executor's block manager or its Python worker daemon, while the
        # application runs.
        kinds = {}
        for address, (server, process) in sockets.items():
            if isinstance(address, str):
                listed = next(
                    (owner for end, owner in LISTED_SOCKETS.items() if end in address), None
                )
            else:
                listed = LISTED_PORTS.get(address - base)
            if listed is None and server.startswith("spark-worker") and isinstance(address, int):
                listed = (
                    server,
                    "spark-executor"
                    if process == "java"
                    else "pyspark-daemon"
                    if process.startswith("python")
                    else None,
                )
            if listed is None or listed[0] != server or listed[1] is None:
                door(f"{server} ({process}) {address}", "a socket nobody listed")
            if listed is not None:
                kinds[address] = listed[1]
        # What the check would miss if the enumeration saw nothing: the published ports, executors and
        # their Python workers.
        assert {base + offset for offset in LISTED_PORTS} <= set(sockets)
        assert {"spark-executor", "pyspark-daemon"} <= set(kinds.values())

        # A Unix socket is reachable only by the stack's user: some directory above it is closed to others.
        for path in (a for a in sockets if isinstance(a, str)):
            if not any(not parent.stat().st_mode & 0o007 for parent in Path(path).parents):
                door(path, "a Unix socket every local user can reach")

        # SeaweedFS's gRPC: no answer without the stack's client certificate; the certificate gets one (control).
        tls = {
            name: (
                cluster_stack["data"] / "cluster" / "seaweedfs" / "config" / "tls" / name
            ).read_bytes()
            for name in ("ca.crt", "seaweedfs.crt", "seaweedfs.key")
        }
        insider = grpc.ssl_channel_credentials(
            tls["ca.crt"], tls["seaweedfs.key"], tls["seaweedfs.crt"]
        )
        for offset, method in WEED_GRPC_METHODS.items():
            port = base + offset
            for how, credentials in (
                ("plain", None),
                ("TLS without a client certificate", grpc.ssl_channel_credentials(tls["ca.crt"])),
            ):
                code, _ = _grpc_call(port, method, credentials)
                if code != grpc.StatusCode.UNAVAILABLE:
                    door(f"{kinds.get(port)} {port}", f"{method} over {how}: {code}")
            control(
                f"gRPC {method} with the stack's certificate",
                _grpc_call(port, method, insider)[0] != grpc.StatusCode.UNAVAILABLE,
            )
        code, assigned = _grpc_call(base + 2, "/master_pb.Seaweed/Assign", insider)
        if control(
            "a file id from the master, with the stack's certificate", code == grpc.StatusCode.OK
        ):
            assignment = _protobuf_strings(assigned)  # 1: the file id, 6: the JWT for writing it
            fid, write_jwt = assignment[1].decode(), assignment[6].decode()

            # The volume server: no write without the master's JWT, no read without one signed with the read key.
            stored = b"written with the master's assignment"
            body, multipart = _multipart(b"written by an outsider")
            door(
                f"weed-volume {base + 3}",
                _through(base + 3, [("POST", f"/{fid}", body)], multipart),
            )
            body, multipart = _multipart(stored)
            control(
                "a write with the master's JWT",
                _http(
                    base + 3,
                    "POST",
                    f"/{fid}",
                    body,
                    multipart | {"Authorization": f"Bearer {write_jwt}"},
                )[0]
                == 201,
            )
            door(
                f"weed-volume {base + 3}",
                _through(base + 3, [("GET", f"/{fid}", None), ("DELETE", f"/{fid}", None)]),
            )
            read_jwt = cluster_script().jwt_hs256(
                creds["WEED_JWT_SIGNING_READ_KEY"].encode(),
                {"fid": fid, "exp": int(time.time()) + 60},
            )
            control(
                "a read with a JWT signed with the read key",
                _http(base + 3, "GET", f"/{fid}", headers={"Authorization": f"Bearer {read_jwt}"})
                == (200, stored),
            )
            door(
                f"weed-master {base + 1}",
                _through(
                    base + 1,
                    [
                        ("GET", f"/dir/lookup?volumeId={fid.split(',')[0]}", None),
                        ("GET", f"/{fid}", None),
                    ],
                ),
            )

        # The master: no assignment, lookup or upload over HTTP (its status page and health check answer).
        body, multipart = _multipart(b"written by an outsider")
        door(
            f"weed-master {base + 1}",
            _through(
                base + 1,
                [
                    ("GET", "/dir/assign", None),
                    ("POST", "/dir/assign", None),
                    ("GET", "/dir/status", None),
                    ("GET", "/vol/status", None),
                ],
            ),
        )
        door(f"weed-master {base + 1}", _through(base + 1, [("POST", "/submit", body)], multipart))

        # The filer, on its port and its Unix socket: no listing, no read, no write.
        for address in (a for a, kind in kinds.items() if kind == "weed-filer"):
            body, multipart = _multipart(b"written by an outsider")
            door(
                f"weed-filer {address}",
                _through(
                    address,
                    [
                        ("GET", "/buckets/", None),
                        ("GET", "/buckets/lakehouse/", None),
                        ("GET", f"/buckets/lakehouse/{key}", None),
                    ],
                ),
            )
            door(
                f"weed-filer {address}",
                _through(
                    address, [("POST", "/buckets/lakehouse/test/outsider.txt", body)], multipart
                ),
            )

        # The S3 API, on its port and its Unix socket: anonymous requests are refused; so is a key pair it never issued.
        for address in (a for a, kind in kinds.items() if kind == "s3"):
            door(
                f"s3 {address}",
                _through(
                    address,
                    [
                        ("GET", "/", None),
                        ("GET", "/lakehouse?list-type=2", None),
                        ("GET", f"/lakehouse/{key}", None),
                        ("PUT", "/lakehouse/test/outsider.txt", b"written by an outsider"),
                        ("DELETE", f"/lakehouse/{key}", None),
                    ],
                ),
            )
        stranger = boto3.client(
            "s3",
            endpoint_url=settings["AWS_ENDPOINT_URL"],
            aws_access_key_id="AKIASTRANGER0000",
            aws_secret_access_key="not-a-key",
            region_name=settings["AWS_REGION"],
        )
        for attempt in (
            lambda: stranger.get_object(Bucket="lakehouse", Key=key),
            lambda: stranger.put_object(Bucket="lakehouse", Key="test/outsider.txt", Body=b"x"),
        ):
            with contextlib.suppress(ClientError):
                attempt()
                door(f"s3 {base}", "a request signed with a key pair the store never issued")
        control(
            "the object, read with the stack's key pair (and deleted by no one)",
            s3.get_object(Bucket="lakehouse", Key=key)["Body"].read()
            == b"kept behind the credentials",
        )

        # PostgreSQL, on TCP and its Unix socket: no connection without the password, for its user or the superuser.
        for address in (a for a, kind in kinds.items() if kind == "postgres"):
            host = (
                {"host": "127.0.0.1", "port": address}
                if isinstance(address, int)
                else {"host": str(Path(address).parent), "port": int(address.rsplit(".", 1)[1])}
            )
            for user in ("lakehouse", "postgres"):
                with contextlib.suppress(psycopg2.OperationalError):
                    psycopg2.connect(**host, user=user, dbname="mlflow", connect_timeout=10).close()
                    door(f"postgres {address}", f"connected as {user} without a password")

        # Redis: nothing answers before AUTH.
        anonymous = redis.Redis(host=redis_host, port=int(redis_port))
        for command, attempt in {
            "PING": anonymous.ping,
            "GET": lambda: anonymous.get("lakehouse:doors"),
            "SET": lambda: anonymous.set("lakehouse:doors", "x"),
            "KEYS": lambda: anonymous.keys("*"),
        }.items():
            with contextlib.suppress(redis.AuthenticationError, redis.ResponseError):
                attempt()
                door(f"redis {redis_port}", f"{command} without AUTH")

        # Spark's web UIs: nothing without a bearer token signed with the UI key; the token gets the
        # master's status (control).
        app_id = application["app"]
        for port in (a for a, kind in kinds.items() if kind == "spark-ui"):
            door(
                f"spark-ui {port}",
                _through(
                    port,
                    [
                        ("GET", "/", None),
                        ("GET", "/json/", None),
                        ("GET", f"/app/?appId={app_id}", None),
                        ("GET", f"/logPage/?appId={app_id}&executorId=0&logType=stdout", None),
                        ("POST", "/app/kill/?id=app-that-is-not-there&terminate=true", None),
                    ],
                ),
            )
        control(
            "the master's status, with the UI token",
            _http(base + 31, "GET", "/json/", headers=spark_ui(cluster_stack))[0] == 200,
        )

        # PySpark's Python worker daemons: a client without the executor's secret is told "err" and dropped.
        for port in (a for a, kind in kinds.items() if kind == "pyspark-daemon"):
            with socket.create_connection(("127.0.0.1", port), timeout=30) as daemon:
                daemon.recv(4)  # the pid of the worker it forked for this connection
                daemon.sendall(
                    struct.pack(">i", 5) + b"guess"
                )  # a length-prefixed UTF-8 string, as Spark sends the secret
                reply = daemon.recv(64)
            if reply != struct.pack(">i", 3) + b"err":
                door(f"pyspark-daemon {port}", f"answered a wrong secret with {reply!r}")

        # Spark's RPC: the master, the workers and the executors' block managers refuse a client without the secret.
        probe = subprocess.run(
            [sys.executable, "-c", SPARK_RPC_PROBE],
            env=outsider_env,
            capture_output=True,
            text=True,
            timeout=600,
            input=json.dumps(
                {
                    "rpc": [("Master", base + 30), ("Worker", base + 32), ("Worker", base + 34)],
                    "secret": creds["LAKEHOUSE_SPARK_SECRET"],
                    "executors": [a for a, kind in kinds.items() if kind == "spark-executor"],
                    "app": app_id,
                    "blocks": application["blocks"],
                }
            ),
        )
        assert probe.returncode == 0, probe.stderr[-3000:]
        for what, result in json.loads(probe.stdout.strip().splitlines()[-1]).items():
            if "control" in what:
                control(f"Spark RPC: {what}", result == "answered")
            elif (
                "Expected SaslMessage" not in result
            ):  # Spark's refusal of a client that does not authenticate
                door(f"spark {what}", result.splitlines()[0][:200])

        # MLflow: every route of the server's apps refuses an anonymous request and a wrong password, but
        # the public few.
        for method, path in _mlflow_routes():
            try:
                status, _ = _http(
                    base + 40,
                    method,
                    path,
                    b"{}" if method in ("POST", "PUT", "PATCH") else None,
                    {"Content-Type": "application/json"},
                    timeout=10,
                )
            except TimeoutError:  # the request was taken, not refused
                status = "no answer within 10 s"
            if status not in (401, 403) and not path.startswith(MLFLOW_PUBLIC):
                door(f"mlflow {base + 40}", f"{method} {path}: {status}")
        artifact = (
            f"/api/2.0/mlflow-artifacts/artifacts/{run.info.experiment_id}/{run.info.run_id}"
            "/artifacts/snapshot.txt"
        )
        door(
            f"mlflow {base + 40}",
            _through(
                base + 40,
                [("GET", artifact, None)],
                {"Authorization": "Basic " + base64.b64encode(b"lakehouse:wrong").decode()},
            ),
        )
        door(
            f"mlflow {base + 40}",
            _through(
                base + 40,
                [("GET", artifact, None)],
                {"Authorization": "Basic " + base64.b64encode(b"admin:password1234").decode()},
            ),
        )
        login = (
            "Basic "
            + base64.b64encode(
                f"{settings['MLFLOW_TRACKING_USERNAME']}:{settings['MLFLOW_TRACKING_PASSWORD']}".encode()
            ).decode()
        )
        control(
            "the artifact, read with the login",
            _http(base + 40, "GET", artifact, headers={"Authorization": login})
            == (200, b"a training set"),
        )

        # A credential on a command line is readable by every local user (ps): none of the stack's is on one.
        for name, pid in running(cluster_stack).items():
            top = psutil.Process(pid)
            for process in [top, *top.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    command = "\0".join(process.cmdline())
                    door(
                        f"{name} ({process.name()} {process.pid}) command line",
                        [credential for credential, value in creds.items() if value in command],
                    )
    finally:
        held.communicate(input="", timeout=120)
        out, err = without_secret.communicate(timeout=300)

    # The application without the secret never ran: the master refused it, and it gave up.
    if "counted" in out or without_secret.returncode == 0:
        door(
            "spark-master application",
            f"an application without the secret ran: {out.strip()[-200:]}",
        )
    assert doors == {}
    assert failed_controls == []


def test_feast_on_the_cluster_profile_serves_from_redis_what_the_offline_store_holds_and_survives_redis_stopping(
    cluster_stack, tmp_path, monkeypatch
):
    import numpy as np
    from synthetic_features import land_feature_days

    from lakehouse.features.feature_store import (
        OnlineLoadError,
        apply_definitions,
        config_file,
        materialize_incremental,
        online_offline_mismatches,
        open_store,
    )

    settings = cluster_stack["settings"]
    root = f"s3://lakehouse/test/{uuid.uuid4().hex}/delta"
    # A project of its own: the registry and Redis are the session's, which the whole graph may use first.
    project = f"cluster_test_{uuid.uuid4().hex[:8]}"
    for key, value in {
        **settings,
        "LAKEHOUSE_DELTA_ROOT": root,
        "LAKEHOUSE_DATA_DIR": str(tmp_path),
        "LAKEHOUSE_FEAST_PROJECT": project,
    }.items():
        monkeypatch.setenv(key, value)
    delta = DeltaStore(root, storage_options=storage_options(settings))
    rng = np.random.default_rng(3)
    land_feature_days(delta, rng, rng.gamma(2.0, 0.4, 60), range(0, 3))

    store = open_store(tmp_path)
    assert sorted(apply_definitions(store)) == ["category_activity", "user_activity"]
    newest = max(
        delta.read_arrow("user_features", columns=["feature_ts"])["feature_ts"].to_pylist()
    )
    assert materialize_incremental(store, newest) is not None
    compared, mismatches = online_offline_mismatches(
        store
    )  # Redis against the Delta tables on the object store
    assert compared > 0 and mismatches == []

    # feast serve, on the same rendered config: the registry from PostgreSQL, the values from Redis.
    latest = delta.read_arrow("user_features").to_pandas()
    latest = (
        latest[latest["feature_ts"] == latest["feature_ts"].max()]
        .set_index("user_id")
        .sort_index()
        .head(5)
    )
    port = free_block(1)
    server = subprocess.Popen(
        [
            Path(sys.executable).parent / "feast",
            "-c",
            str(REPO_ROOT / "feature_repo"),
            "-f",
            str(config_file(tmp_path)),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--no-access-log",
        ],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(240):
            try:
                response = requests.post(
                    f"http://127.0.0.1:{port}/get-online-features",
                    timeout=5,
                    json={
                        "features": ["user_activity:purchases_30d"],
                        "entities": {"user_id": latest.index.tolist()},
                    },
                )
                break
            except requests.ConnectionError:
                assert server.poll() is None, "feast serve exited"
                time.sleep(0.5)
        response.raise_for_status()
        body = response.json()
        served = dict(
            zip(body["metadata"]["feature_names"], (r["values"] for r in body["results"]))
        )
        assert served["purchases_30d"] == latest["purchases_30d"].tolist()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    # Nothing secret in the rendered config, nor in the registry Feast keeps in PostgreSQL.
    secrets = [
        settings[k]
        for k in ("AWS_SECRET_ACCESS_KEY", "LAKEHOUSE_PG_PASSWORD", "LAKEHOUSE_REDIS_PASSWORD")
    ]
    assert not any(s in config_file(tmp_path).read_text() for s in secrets)
    with postgres(settings, "feast") as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        dump = b""
        for (table,) in cursor.fetchall():
            cursor.execute(
                psycopg2.sql.SQL("SELECT * FROM {}").format(psycopg2.sql.Identifier(table))
            )
            dump += repr(cursor.fetchall()).encode()
    assert root.encode() in dump or b"user_features" in dump  # the registry is there
    assert not any(s.encode() in dump for s in secrets)

    # Redis stops: the next load fails and says so, the offline tables are untouched, and once Redis is
    # back the load takes the same window again.
    land_feature_days(delta, rng, rng.gamma(2.0, 0.4, 60), range(3, 4))
    versions = {name: delta.version(name) for name in ("user_features", "category_features")}
    newest = max(
        delta.read_arrow("user_features", columns=["feature_ts"])["feature_ts"].to_pylist()
    )
    stop_server(cluster_stack, "redis")
    try:
        with pytest.raises(
            OnlineLoadError,
            match=r"into the online store \(redis\) failed: ConnectionError.*offline tables are unchanged",
        ):
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

schema = TableSchema(
    "slow",
    "rows a slow job wrote",
    (Col("id", "long", "a row"), Col("bucket", "long", "id % 4")),
    partition_by=("bucket",),
)
spark = get_spark()
slow = F.udf(lambda i: time.sleep(0.1) or i, T.LongType())
rows = spark.range(0, 240, numPartitions=8).select(slow("id").alias("id"), (F.col("id") % 4).alias("bucket"))
version = DeltaStore(sys.argv[1]).write_spark(
    schema, rows, inputs={"upstream": 4}, properties={"lakehouse.batch_id": "b-1"}
)
print(json.dumps({"version": version, "master": spark.sparkContext.master}), flush=True)
"""


def _executors_by_worker(stack: dict) -> dict[int, int]:
    """Running executors per worker port, from the master's status page."""
    master_ui = int(stack["settings"]["LAKEHOUSE_SPARK_MASTER"].rsplit(":", 1)[1]) + 1
    status = requests.get(
        f"http://127.0.0.1:{master_ui}/json/", headers=spark_ui(stack), timeout=5
    ).json()
    counts = {w["port"]: 0 for w in status["workers"] if w["state"] == "ALIVE"}
    for worker in status["workers"]:
        if worker["state"] == "ALIVE" and worker["coresused"]:
            counts[worker["port"]] = worker["coresused"]
    return counts


def test_a_spark_job_whose_worker_is_killed_finishes_on_the_other_worker_and_commits_to_the_object_store(
    cluster_stack,
):
    settings = cluster_stack["settings"]
    root = f"s3://lakehouse/test/{uuid.uuid4().hex}"
    env = {**cluster_stack["env"], **settings, "SPARK_LOCAL_IP": "127.0.0.1"}
    job = subprocess.Popen(
        [sys.executable, "-c", SLOW_SPARK_JOB, root],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while (
            sum(1 for cores in _executors_by_worker(cluster_stack).values() if cores) < 2
        ):  # running on both workers
            assert job.poll() is None, job.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the job never ran on both workers"
            time.sleep(0.5)
        time.sleep(3)  # tasks under way on both
        stop_server(
            cluster_stack, "spark-worker-2", signal.SIGKILL
        )  # the worker and its executor: a machine lost
        out, err = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
        start_stopped(cluster_stack)
    assert job.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1]) == {
        "version": 0,
        "master": settings["LAKEHOUSE_SPARK_MASTER"],
    }
    # delta-rs reads what the job committed at the same s3:// URI: every row once (the lost tasks ran
    # again), and what the commit recorded.
    store = DeltaStore(root, storage_options=storage_options(settings))
    assert sorted(store.read_arrow("slow")["id"].to_pylist()) == list(range(240))
    assert (
        store.commit_inputs("slow", 0) == {"upstream": 4}
        and store.commit_info("slow", 0)["lakehouse.batch_id"] == "b-1"
    )


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


def test_commits_while_the_object_store_is_stopped_are_retried_or_fail_without_publishing_half(
    cluster_stack,
):
    settings = cluster_stack["settings"]
    uri = f"s3://lakehouse/test/{uuid.uuid4().hex}"
    env = {**cluster_stack["env"], **settings}
    writer = subprocess.Popen(
        [sys.executable, "-c", APPENDER, uri, "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "0"  # the table exists; commits are under way
        for part in (
            "seaweedfs-s3",
            "seaweedfs-filer",
            "seaweedfs-volume",
            "seaweedfs-master",
        ):  # the whole store, the gateway first
            stop_server(cluster_stack, part)
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
        assert (
            "Traceback" in err
            and rows == list(range(len(rows)))
            and len(rows) - len(committed) <= 1
        )
    write_deltalake(
        uri,
        pa.table({"i": pa.array([99], pa.int64()), "pad": pa.array(["y"])}),
        mode="append",
        storage_options=storage_options(settings),
    )
    assert DeltaTable(uri, storage_options=storage_options(settings)).version() == len(rows)
