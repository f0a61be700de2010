"""Feature store figures: historical retrieval, materialization and online lookups on the Delta offline store.

On N_ENTITIES x N_TIMES feature rows (6 features) and N_ENTITY_ROWS entity rows, printed against
references measured in the same run:
1. historical retrieval through the Feast SDK (Delta offline store), against a bare DuckDB
   `ASOF LEFT JOIN` over the same Delta data: time and peak memory of each, as ratios. Each runs in
   its own subprocess so that peak RSS (VmHWM) is its own. Feast's `file` store on the same data is
   timed too, for comparison.
2. `feast materialize` of all entities into the SQLite online store: seconds and rows per second.
3. online lookups: p50/p99 of 1,000 single-entity SDK calls, and of 1,000 HTTP calls to
   `feast serve` (127.0.0.1, keep-alive).

Usage: .venv/bin/python bench/feast_offline.py [--entities 100000] [--times 20] [--entity-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa

warnings.simplefilter("ignore")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FEATURES = ["f_count_1d", "f_count_7d", "f_count_30d", "f_revenue_30d", "f_recency_days", "f_ratio"]

REPO = """
from datetime import timedelta
from feast import Entity, FeatureView, Field, ValueType
from feast.types import Float64, Int64
from lakehouse.features.feast_delta import DeltaSource

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
features = FeatureView(
    name="bench", entities=[user], ttl=timedelta(days=30),
    schema=[Field(name=n, dtype=Float64 if n in ("f_revenue_30d", "f_ratio") else Int64) for n in {features}],
    source=DeltaSource(name="bench_source", path={path!r}, timestamp_field="ts"),
)
"""


def build(root: Path, entities: int, times: int, entity_rows: int) -> None:
    from deltalake import write_deltalake

    rng = np.random.default_rng(0)
    ids = np.array([f"usr_{i:07d}" for i in range(entities)])
    n = entities * times
    # Each entity gets `times` distinct timestamps over 60 days.
    offsets = np.sort(
        rng.choice(60 * 24 * 60, size=(entities, times), replace=True), axis=1
    ).ravel()
    ts = pa.array(
        (np.datetime64(START.replace(tzinfo=None), "us") + offsets.astype("timedelta64[m]")).astype(
            "datetime64[us]"
        ),
        pa.timestamp("us", tz="UTC"),
    )
    table = pa.table(
        {
            "user_id": pa.array(np.repeat(ids, times)),
            "ts": ts,
            **{name: pa.array(rng.integers(0, 100, n)) for name in FEATURES[:3]},
            "f_revenue_30d": pa.array(rng.random(n) * 500),
            "f_recency_days": pa.array(rng.integers(0, 30, n)),
            "f_ratio": pa.array(rng.random(n)),
        }
    )
    write_deltalake(str(root / "features"), table, mode="overwrite")
    entity_ts = (
        np.datetime64(START.replace(tzinfo=None), "us")
        + rng.integers(0, 70 * 24 * 60, entity_rows).astype("timedelta64[m]")
    ).astype("datetime64[us]")
    entity = pa.table(
        {
            "user_id": pa.array(ids[rng.integers(0, entities, entity_rows)]),
            "event_timestamp": pa.array(entity_ts, pa.timestamp("us", tz="UTC")),
        }
    )
    import pyarrow.parquet as pq

    pq.write_table(entity, root / "entity.parquet")
    repo = root / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        f"project: bench\nprovider: local\nregistry: {root / 'registry.db'}\n"
        f"online_store:\n  type: sqlite\n  path: {root / 'online.db'}\n"
        "offline_store:\n  type: lakehouse.features.feast_delta.DeltaOfflineStore\n"
        "entity_key_serialization_version: 3\n"
    )
    (repo / "bench_repo.py").write_text(REPO.format(features=FEATURES, path=str(root / "features")))


def _peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(kind: str, root: Path) -> dict:
    """Runs in a subprocess: load the entity rows, then time one retrieval of `kind`."""
    import duckdb
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    entity = pq.read_table(root / "entity.parquet")
    if kind != "duckdb_asof":
        from feast import FeatureStore

        store = FeatureStore(
            repo_path=str(root / ("repo" if kind == "delta_store" else "file_repo"))
        )
        store.get_feature_view("bench")  # the registry is loaded before the clock starts
        entity_df = entity.to_pandas()  # the SDK takes pandas: a caller already holds one
    began = time.perf_counter()
    if kind == "duckdb_asof":
        con = duckdb.connect()
        con.register("features", DeltaTable(str(root / "features")).to_pyarrow_dataset())
        con.register("entity", entity)
        # TTL 30 days, as in the feature view (an ASOF join takes one inequality: the TTL nulls stale matches).
        columns = ", ".join(
            f"CASE WHEN f.ts >= e.event_timestamp - INTERVAL 30 DAY THEN f.{c} END AS {c}"
            for c in FEATURES
        )
        result = con.execute(
            f"SELECT e.*, {columns} FROM entity e ASOF LEFT JOIN features f "
            "ON e.user_id = f.user_id AND e.event_timestamp >= f.ts"
        ).to_arrow_table()
    else:
        refs = [f"bench:{c}" for c in FEATURES]
        result = store.get_historical_features(entity_df=entity_df, features=refs).to_arrow()
    seconds = time.perf_counter() - began
    return {"kind": kind, "seconds": seconds, "rows": result.num_rows, "peak_mib": _peak_mib()}


def run_measure(kind: str, root: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--root", str(root)],
        capture_output=True,
        text=True,
        cwd=root / "repo",
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"{kind} failed: " + (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def file_store_repo(root: Path) -> None:
    """The same feature view on Feast's own `file` offline store (FileSource with DeltaFormat)."""
    repo = root / "file_repo"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        f"project: bench_file\nprovider: local\nregistry: {root / 'file_registry.db'}\n"
        f"online_store:\n  type: sqlite\n  path: {root / 'file_online.db'}\n"
        "offline_store:\n  type: file\nentity_key_serialization_version: 3\n"
    )
    text = REPO.format(features=FEATURES, path=str(root / "features"))
    text = text.replace(
        "from lakehouse.features.feast_delta import DeltaSource",
        "from feast import FileSource\nfrom feast.data_format import DeltaFormat",
    )
    text = text.replace(
        'DeltaSource(name="bench_source", path=',
        'FileSource(name="bench_source", file_format=DeltaFormat(), path=',
    )
    (repo / "bench_repo.py").write_text(text)


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return f"p50 {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms"


def online(root: Path, entities: int) -> None:
    import requests
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(root / "repo"))
    began = time.perf_counter()
    store.materialize(start_date=START - timedelta(days=1), end_date=START + timedelta(days=61))
    seconds = time.perf_counter() - began
    print(
        f"feast materialize of {entities} entities into SQLite: {seconds:.1f} s, {entities / seconds:,.0f} rows/s"
    )

    rng = np.random.default_rng(1)
    ids = [f"usr_{i:07d}" for i in rng.integers(0, entities, 1000)]
    refs = [f"bench:{c}" for c in FEATURES]
    store.get_online_features(features=refs, entity_rows=[{"user_id": ids[0]}])  # warm
    samples = []
    for user in ids:
        began = time.perf_counter()
        store.get_online_features(features=refs, entity_rows=[{"user_id": user}])
        samples.append(time.perf_counter() - began)
    print(f"online, SDK, 1,000 single-entity calls: {percentiles(samples)}")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feast = Path(sys.executable).parent / "feast"
    # --max-requests 0: by default gunicorn recycles the worker every ~1,000 requests, and the calls
    # that arrive meanwhile wait about a second (bench/feast_http.py measures it).
    server = subprocess.Popen(
        [
            feast,
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--no-access-log",
            "--max-requests",
            "0",
        ],
        cwd=root / "repo",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/get-online-features"
        session = requests.Session()
        body = lambda user: {"features": refs, "entities": {"user_id": [user]}}  # noqa: E731
        deadline = time.monotonic() + 120
        while True:
            try:
                if session.post(url, json=body(ids[0]), timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                print("feast serve did not come up")
                return
            time.sleep(0.5)
        samples = []
        for user in ids:
            began = time.perf_counter()
            response = session.post(url, json=body(user), timeout=5)
            samples.append(time.perf_counter() - began)
            response.raise_for_status()
        print(f"online, HTTP to feast serve (keep-alive), 1,000 calls: {percentiles(samples)}")
    finally:
        os.killpg(server.pid, 2)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-file-store", action="store_true")
    parser.add_argument("--measure")
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, Path(args.root))))
        return

    root = Path(tempfile.mkdtemp(prefix="bench-feast-"))
    began = time.perf_counter()
    build(root, args.entities, args.times, args.entity_rows)
    print(
        f"{args.entities * args.times:,} feature rows "
        f"({args.entities:,} entities x {args.times}, {len(FEATURES)} features), "
        f"{args.entity_rows:,} entity rows; built in {time.perf_counter() - began:.0f} s under {root}"
    )
    from feast import FeatureStore

    sys.path.insert(0, str(root / "repo"))
    import bench_repo  # noqa: E402

    FeatureStore(repo_path=str(root / "repo")).apply([bench_repo.user, bench_repo.features])
    reference = run_measure("duckdb_asof", root)
    ours = run_measure("delta_store", root)
    print(
        f"historical retrieval, DuckDB ASOF LEFT JOIN (reference): {reference['seconds']:.1f} s, "
        f"peak {reference['peak_mib']:.0f} MiB, {reference['rows']:,} rows"
    )
    print(
        f"historical retrieval, Feast SDK on the Delta offline store: {ours['seconds']:.1f} s, "
        f"peak {ours['peak_mib']:.0f} MiB, {ours['rows']:,} rows"
        f"  -> {ours['seconds'] / reference['seconds']:.2f}x the time, "
        f"{ours['peak_mib'] / reference['peak_mib']:.2f}x the memory"
    )
    if not args.skip_file_store:
        file_store_repo(root)
        del sys.modules["bench_repo"]
        sys.path.insert(0, str(root / "file_repo"))
        import importlib

        file_repo = importlib.import_module("bench_repo")
        FeatureStore(repo_path=str(root / "file_repo")).apply([file_repo.user, file_repo.features])
        try:
            theirs = run_measure("file_store", root)
        except RuntimeError as exc:
            print(f"historical retrieval, Feast's file store: {exc}")
        else:
            print(
                f"historical retrieval, Feast's file store (comparison): {theirs['seconds']:.1f} s, "
                f"peak {theirs['peak_mib']:.0f} MiB, {theirs['rows']:,} rows"
            )
    online(root, args.entities)


if __name__ == "__main__":
    main()
