"""HTTP latency of `feast serve` for single-entity /get-online-features calls, against a bare floor.

Builds a small repo with bench/feast_offline.py's `build` (N_ENTITIES x N_TIMES rows, 6 features),
materializes it into the SQLite online store, then times CALLS keep-alive POSTs (127.0.0.1) against:

  (a) `feast serve` as bench/feast_offline.py runs it (gunicorn + 1 uvicorn worker, --no-access-log,
      every other flag at its default: --max-requests 1000, --registry_ttl_sec 60, ...);
  (b) `feast serve` in the best configuration found (BEST_FLAGS below; nothing in feature_store.yaml helped);
  (c) a bare ASGI callable under uvicorn (uvloop + httptools, as Feast's worker uses), doing the same
      SQLite read of the same rows (Feast's entity-key encoding, the same SQL, ValueProto parsing) and
      returning the same JSON: the floor for "HTTP + a SQLite read in Python";
  (e) the same bare ASGI callable, but calling the Feast SDK's `store.get_online_features` in the event
      loop (no FastAPI, no thread hops): what a thin serving shim of our own would cost;
  (d) Feast's own app (feast.feature_server.get_app, the app `feast serve` runs) in-process under
      uvicorn, instrumented: per request, the server time split into SDK call (of which the SQLite
      `online_read`), JSON conversion, thread-pool hops and the FastAPI/Starlette remainder; and the
      part outside the ASGI app (client library, loopback, HTTP parsing in uvicorn).

Every server runs at once in its own process; the calls are interleaved in blocks across servers so
that the noise of a busy machine falls on all of them alike. Two clients: requests.Session (what the
offline bench uses, ~0.8 ms of its own per call) and http.client (a lean keep-alive client).
Figures are printed as ratios against (c), measured in the same run with the same client.
`--noise N` runs N busy-looping processes alongside, to see how each server bears a busy neighbour.
Servers are stopped by their process group (each starts in its own session); about a minute in all.

Usage: .venv/bin/python bench/feast_http.py [--entities 20000] [--times 5] [--calls 1000] [--noise 0]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FEATURES = ["f_count_1d", "f_count_7d", "f_count_30d", "f_revenue_30d", "f_recency_days", "f_ratio"]
REFS = [f"bench:{c}" for c in FEATURES]

# (b): the only `feast serve` setting found to matter. By default (--max-requests 1000, jitter 50)
# gunicorn recycles the single worker every ~1,000 requests: the requests that arrive meanwhile wait
# ~1 s for a new worker. Nothing in feature_store.yaml moved the figures: registry cache_mode
# thread / cache_ttl_seconds 0 save the 2 mtime checks per call (~3 us), --registry_ttl_sec only sets
# how often a background thread re-reads the registry, --workers 2 does not help one connection, and
# the access log (to a file) costs ~0.03 ms.
BEST_FLAGS = ["--no-access-log", "--max-requests", "0"]


# ---------------------------------------------------------------------------------------------
# Setup (runs in a subprocess, so that the client process stays small).


def setup(root: Path, entities: int, times: int) -> None:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    from datetime import timedelta

    import feast_offline
    from feast import FeatureStore

    feast_offline.build(root, entities, times, entity_rows=10)
    sys.path.insert(0, str(root / "repo"))
    import bench_repo

    store = FeatureStore(repo_path=str(root / "repo"))
    store.apply([bench_repo.user, bench_repo.features])
    store.materialize(
        start_date=feast_offline.START - timedelta(days=1),
        end_date=feast_offline.START + timedelta(days=61),
    )


# ---------------------------------------------------------------------------------------------
# Servers run in-process by this script (--serve KIND): (c) bare, (e) bare + SDK, (d) instrumented Feast app.


class Timed:
    """ASGI middleware: per-request server time (app entry to the last body byte handed to uvicorn),
    plus named sub-timings that the patched functions add to `Timed.current`; GET /__timings returns them."""

    current: dict | None = None

    def __init__(self, app):
        self.app = app
        self.records: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/__timings":
            body = json.dumps(self.records).encode()
            self.records = []
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        began = time.perf_counter()
        record = Timed.current = {}

        async def timed_send(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                record["asgi"] = time.perf_counter() - began
            await send(message)

        await self.app(scope, receive, timed_send)
        self.records.append(record)

    @staticmethod
    def add(name: str, seconds: float) -> None:
        if Timed.current is not None:
            Timed.current[name] = Timed.current.get(name, 0.0) + seconds


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            Timed.add(name, time.perf_counter() - began)

    return wrapper


def bare_app(repo: Path, with_sdk: bool):
    """A plain ASGI callable: parse the request, read the entity's rows, answer Feast's JSON."""
    import sqlite3
    from datetime import timezone

    import feast.infra.online_stores.sqlite  # noqa: F401  registers Feast's sqlite3 "timestamp" converter
    import yaml
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    if with_sdk:
        from feast import FeatureStore
        from feast.feature_server_utils import convert_response_to_dict

        store = FeatureStore(repo_path=str(repo))
        store.get_online_features(
            features=REFS, entity_rows=[{"user_id": "usr_0000000"}]
        )  # open the connection, load the registry
    else:
        config = yaml.safe_load((repo / "feature_store.yaml").read_text())
        # What Feast's SqliteOnlineStore opens, once per process.
        conn = sqlite3.connect(
            config["online_store"]["path"],
            detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES,
            check_same_thread=False,
        )
        sql = (
            'SELECT entity_key, feature_name, value, event_ts FROM "bench_bench" '
            "WHERE entity_key IN (?) ORDER BY entity_key"
        )
        epoch = "1970-01-01T00:00:00Z"

    def read(body: dict) -> dict:
        if with_sdk:
            response = store.get_online_features(
                features=body["features"], entity_rows=body["entities"]
            )
            return convert_response_to_dict(response.proto)
        ((join_key, values),) = body["entities"].items()
        key = EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=values[0])])
        rows = conn.execute(
            sql, [serialize_entity_key(key, entity_key_serialization_version=3)]
        ).fetchall()
        by_name = {}
        for _, name, value, ts in rows:
            proto = ValueProto()
            proto.ParseFromString(value)
            kind = proto.WhichOneof("val")
            stamp = (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            by_name[name] = (getattr(proto, kind) if kind else None, stamp)
        names = [ref.split(":", 1)[1] for ref in body["features"]]
        results = [{"values": [values[0]], "statuses": ["PRESENT"], "event_timestamps": [epoch]}]
        for name in names:
            value, stamp = by_name.get(name, (None, epoch))
            results.append(
                {
                    "values": [value],
                    "statuses": ["PRESENT" if name in by_name else "NOT_FOUND"],
                    "event_timestamps": [stamp],
                }
            )
        return {"results": results, "metadata": {"feature_names": [join_key, *names]}}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        out = json.dumps(read(json.loads(b"".join(chunks))), separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(out)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": out})

    return app


def feast_app(repo: Path):
    """Feast's own app (what `feast serve` runs in its worker), with timers around its parts."""
    import feast.feature_server as fs
    from feast import FeatureStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore
    from feast.permissions.server.utils import (
        ServerType,
        init_auth_manager,
        init_security_manager,
        str_to_auth_manager_type,
    )

    store = FeatureStore(repo_path=str(repo))
    auth_type = str_to_auth_manager_type(store.config.auth_config.type)
    init_security_manager(auth_type=auth_type, fs=store)
    init_auth_manager(
        auth_type=auth_type, server_type=ServerType.REST, auth_config=store.config.auth_config
    )
    SqliteOnlineStore.online_read = timed("sqlite_online_read", SqliteOnlineStore.online_read)
    store.get_online_features = timed("sdk_get_online_features", store.get_online_features)
    fs.convert_response_to_dict = timed("convert_response_to_dict", fs.convert_response_to_dict)
    run_in_threadpool = fs.run_in_threadpool

    async def hop_timed(fn, *args, **kwargs):
        marks = {}

        def inner():
            marks["start"] = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                marks["end"] = time.perf_counter()

        submitted = time.perf_counter()
        result = await run_in_threadpool(inner)
        Timed.add(
            "thread_hops", (marks["start"] - submitted) + (time.perf_counter() - marks["end"])
        )
        return result

    fs.run_in_threadpool = hop_timed
    return fs.get_app(store, registry_ttl_sec=60)


def serve(kind: str, repo: Path, port: int) -> None:
    import uvicorn

    if kind == "feast_inproc":
        app = feast_app(repo)
    else:
        app = bare_app(repo, with_sdk=(kind == "bare_sdk"))
    uvicorn.run(
        Timed(app),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        timeout_keep_alive=30,
    )


# ---------------------------------------------------------------------------------------------
# Client side.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, label: str, command: list[str], cwd: Path, root: Path):
        self.name, self.label, self.port = name, label, free_port()
        self.in_process = "--serve" in command  # served by this script, behind `Timed`
        env = dict(
            os.environ, XDG_RUNTIME_DIR=str(root / f"run-{name}")
        )  # each gunicorn its own control socket
        Path(env["XDG_RUNTIME_DIR"]).mkdir(exist_ok=True)
        self.log = open(root / f"{name}.log", "w")
        command = [c.replace("{port}", str(self.port)) for c in command]
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def timings(self) -> list[dict]:
        get = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            get.request("GET", "/__timings")
            return json.loads(get.getresponse().read())
        finally:
            get.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(
                    self.process.pid, signal.SIGTERM
                )  # our own session: the server and its workers
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self.log.close()


def body_for(user: str) -> dict:
    return {"features": REFS, "entities": {"user_id": [user]}}


class RequestsClient:
    name = "requests.Session"

    def __init__(self, port: int):
        import requests

        self.session, self.url = requests.Session(), f"http://127.0.0.1:{port}/get-online-features"

    def call(self, user: str) -> bytes:
        response = self.session.post(self.url, json=body_for(user), timeout=10)
        response.raise_for_status()
        return response.content


class RawClient:
    name = "http.client"

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, user: str) -> bytes:
        for attempt in (
            0,
            1,
        ):  # a worker recycled by gunicorn closes the connection: reconnect once
            try:
                self.connection.request(
                    "POST",
                    "/get-online-features",
                    body=json.dumps(body_for(user)),
                    headers={"Content-Type": "application/json"},
                )
                response = self.connection.getresponse()
                data = response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
                return data
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                if attempt:
                    raise
        raise AssertionError


def wait_up(server: Server, deadline: float) -> None:
    while True:
        try:
            RawClient(server.port).call("usr_0000000")
            return
        except (OSError, http.client.HTTPException):
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not come up; see {server.log.name}")
        time.sleep(0.3)


def ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if q == 0.5:
        return statistics.median(ordered) * 1000
    return ordered[int(len(ordered) * q) - 1] * 1000  # as feast_offline.percentiles


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument(
        "--blocks", type=int, default=4, help="interleaved blocks per server and client"
    )
    parser.add_argument(
        "--noise",
        type=int,
        default=0,
        help="busy-looping processes to run alongside (a noisy neighbour)",
    )
    parser.add_argument("--setup")
    parser.add_argument("--serve")
    parser.add_argument("--repo")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.setup:
        return setup(Path(args.setup), args.entities, args.times)
    if args.serve:
        return serve(args.serve, Path(args.repo), args.port)

    import numpy as np

    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="bench-feast-http-"))
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--setup",
            str(root),
            "--entities",
            str(args.entities),
            "--times",
            str(args.times),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=HERE.parent,
    )
    print(
        f"{args.entities:,} entities x {args.times} times ({len(FEATURES)} features) "
        f"built and materialized in {time.perf_counter() - began:.0f} s under {root}"
    )

    feast = str(Path(sys.executable).parent / "feast")
    me = [sys.executable, str(Path(__file__).resolve())]
    specs = [
        (
            "today",
            "(a) feast serve, as feast_offline.py runs it",
            [feast, "serve", "-h", "127.0.0.1", "-p", "{port}", "--no-access-log"],
            root / "repo",
        ),
        (
            "best",
            f"(b) feast serve {' '.join(BEST_FLAGS)}",
            [feast, "serve", "-h", "127.0.0.1", "-p", "{port}", *BEST_FLAGS],
            root / "repo",
        ),
        (
            "bare",
            "(c) bare ASGI + the same SQLite read (floor)",
            [*me, "--serve", "bare", "--repo", str(root / "repo"), "--port", "{port}"],
            HERE.parent,
        ),
        (
            "bare_sdk",
            "(e) bare ASGI + Feast SDK get_online_features",
            [*me, "--serve", "bare_sdk", "--repo", str(root / "repo"), "--port", "{port}"],
            HERE.parent,
        ),
        (
            "feast_inproc",
            "(d) Feast's app in-process, instrumented",
            [*me, "--serve", "feast_inproc", "--repo", str(root / "repo"), "--port", "{port}"],
            HERE.parent,
        ),
    ]
    servers: list[Server] = []
    noise: list[subprocess.Popen] = []
    try:
        for name, label, command, cwd in specs:
            servers.append(Server(name, label, command, cwd, root))
        deadline = time.monotonic() + 150
        for server in servers:
            wait_up(server, deadline)
        print(f"servers up after {time.perf_counter() - began:.0f} s")
        for _ in range(
            args.noise
        ):  # a busy neighbour: one core's worth of pure-Python spinning each
            noise.append(
                subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            )

        rng = np.random.default_rng(1)
        users = [f"usr_{i:07d}" for i in rng.integers(0, args.entities, args.calls)]
        results: dict[tuple[str, str], list[float]] = {}
        timings: dict[str, list[dict]] = {}
        for client_class in (RequestsClient, RawClient):
            clients = {s.name: client_class(s.port) for s in servers}
            for s in servers:  # warm-up, and check that every server answers the same values
                answer = json.loads(clients[s.name].call(users[0]))
                for _ in range(100):
                    clients[s.name].call(users[1])
                values = sorted(json.dumps(r["values"]) for r in answer["results"])
                if s is servers[0]:
                    reference = values
                elif values != reference:
                    raise RuntimeError(f"{s.name} answers {values}, {servers[0].name} {reference}")
            for s in servers:
                if s.in_process:
                    s.timings()  # drops the warm-up records
            step = args.calls // args.blocks
            for block in range(args.blocks):
                for s in servers if block % 2 == 0 else servers[::-1]:
                    call, samples = (
                        clients[s.name].call,
                        results.setdefault((client_class.name, s.name), []),
                    )
                    for user in users[block * step : (block + 1) * step]:
                        t = time.perf_counter()
                        call(user)
                        samples.append(time.perf_counter() - t)
            if client_class is RawClient:
                timings = {s.name: s.timings() for s in servers if s.in_process}
        for process in noise:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        noise = []

        print(
            f"\n{len(users):,} single-entity POST /get-online-features per server and client, "
            "keep-alive, 127.0.0.1"
            f"{f', with {args.noise} busy process(es) alongside' if args.noise else ''}; "
            "ratios against (c) with the same client"
        )
        for client_name in (RequestsClient.name, RawClient.name):
            floor = results[(client_name, "bare")]
            print(f"\nclient: {client_name}")
            for s in servers:
                samples = results[(client_name, s.name)]
                print(
                    f"  {s.label:<50} p50 {ms(samples, 0.5):6.2f} ms ({ms(samples, 0.5) / ms(floor, 0.5):4.2f}x)"
                    f"  p99 {ms(samples, 0.99):6.2f} ms ({ms(samples, 0.99) / ms(floor, 0.99):4.2f}x)"
                    f"  max {max(samples) * 1000:7.1f} ms"
                )
        print(
            "\nserver-side time (ASGI app entry -> last byte handed to uvicorn), http.client calls:"
        )
        for s in servers:
            if s.in_process:
                asgi = [r["asgi"] for r in timings[s.name]]
                print(f"  {s.label:<50} p50 {ms(asgi, 0.5):6.3f} ms  p99 {ms(asgi, 0.99):6.3f} ms")

        # (d): where the time of one request goes, in Feast's app (medians per part, http.client samples).
        records = timings["feast_inproc"]
        client = results[(RawClient.name, "feast_inproc")]
        parts = [
            "sdk_get_online_features",
            "sqlite_online_read",
            "convert_response_to_dict",
            "thread_hops",
        ]
        med = {p: ms([r.get(p, 0.0) for r in records], 0.5) for p in ["asgi", *parts]}
        p99 = {p: ms([r.get(p, 0.0) for r in records], 0.99) for p in ["asgi", *parts]}
        rest = [
            r["asgi"] - sum(r.get(p, 0.0) for p in parts if p != "sqlite_online_read")
            for r in records
        ]
        total = ms(client, 0.5)
        bare_total, bare_asgi = (
            ms(results[(RawClient.name, "bare")], 0.5),
            ms([r["asgi"] for r in timings["bare"]], 0.5),
        )
        print(
            f"\n(d) where the time goes in Feast's app, {len(records):,} http.client calls, "
            "medians (p99); the share is of the client-measured median"
        )
        rows = [
            ("client-measured total", total, ms(client, 0.99)),
            (
                "  outside the ASGI app: client, loopback, uvicorn HTTP parsing",
                total - med["asgi"],
                None,
            ),
            ("  inside the ASGI app (request in -> last byte out)", med["asgi"], p99["asgi"]),
            (
                "    SDK store.get_online_features (worker thread)",
                med["sdk_get_online_features"],
                p99["sdk_get_online_features"],
            ),
            (
                "      of which SqliteOnlineStore.online_read",
                med["sqlite_online_read"],
                p99["sqlite_online_read"],
            ),
            (
                "    convert_response_to_dict (worker thread)",
                med["convert_response_to_dict"],
                p99["convert_response_to_dict"],
            ),
            (
                "    2 run_in_threadpool hops (submit->start, end->resume)",
                med["thread_hops"],
                p99["thread_hops"],
            ),
            ("    FastAPI/Starlette/pydantic: the rest of the app", ms(rest, 0.5), ms(rest, 0.99)),
            ("the floor (c), for comparison: client-measured total", bare_total, None),
            ("  of which inside its ASGI app (parse, SQLite read, JSON)", bare_asgi, None),
        ]
        for label, value, tail in rows:
            print(
                f"  {label:<62} {value:6.3f} ms ({value / total * 100:3.0f}%)"
                + (f"  p99 {tail:6.3f} ms" if tail is not None else "")
            )
        print(f"\ntotal {time.perf_counter() - began:.0f} s")
    finally:
        for process in noise:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
