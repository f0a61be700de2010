"""`make demo`: land a default window of events, materialize every asset through the Dagster CLI, say where things are.

Runs on the local profile under LAKEHOUSE_DATA_DIR (default data/); `--cluster` (`make cluster-demo`)
runs it on the cluster profile, against the servers `scripts/cluster.py up` started. Re-running it is idempotent:
the same events land again, every partition is replaced by predicate, full tables are overwritten,
and a new MLflow run is recorded against the same table contents.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from lakehouse.cli import default_window
from lakehouse.config import REPO_ROOT, lakehouse_paths, public_uri
from lakehouse.events.generator import GeneratorConfig, generate
from lakehouse.features.feature_store import config_file
from lakehouse.ml.reproduce import training_runs
from lakehouse.tables.storage import DeltaStore
from resources.instance import prepare_instance

TABLES = (
    "raw_events",
    "cleaned_events",
    "quarantined_events",
    "daily_active_users",
    "daily_revenue",
    "weekly_retention",
    "user_features",
    "category_features",
    "training_labels",
)


def main(argv: list[str]) -> int:
    if "--cluster" in argv:
        import cluster  # scripts/cluster.py: the environment that points the profile at its servers

        os.environ.update(cluster.environment(cluster.cluster_dir()))
    cluster_profile = os.environ.get("LAKEHOUSE_PROFILE") == "cluster"
    paths = lakehouse_paths()
    start, days = default_window(30)
    end = start + timedelta(days=days - 1)
    manifest = generate(paths.landing, start, days, GeneratorConfig())
    lines = sum(
        manifest["days"][(start + timedelta(days=i)).isoformat()]["lines"] for i in range(days)
    )
    print(f"landed {lines} event lines for {start}..{end} in {paths.landing}")

    env = os.environ | {
        "DAGSTER_HOME": str(prepare_instance()),
        "LAKEHOUSE_DATA_DIR": str(paths.data_dir),
    }
    log = paths.data_dir / "demo-materialize.log"
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-f",
        str(REPO_ROOT / "definitions.py"),
        "--select",
        "not group:maintenance",  # maintenance runs on its own schedule
        "--partition-range",
        f"{start}...{end}",
    ]
    print(f"materializing every asset for {start}..{end} (log: {log}) ...", flush=True)
    began = time.monotonic()
    with open(log, "w") as out:
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        print(
            f"materialization failed after {time.monotonic() - began:.0f} s; see {log}",
            file=sys.stderr,
        )
        return result.returncode
    print(f"materialized in {time.monotonic() - began:.0f} s\n")

    store = DeltaStore(paths.delta_root)
    print(f"Delta tables under {paths.delta_root}:")
    for table in TABLES:
        version = store.version(table)
        print(f"  {table:<20} version {version:<4} {store.row_count(table, version):>9} rows")
    runs = training_runs(paths.mlflow_tracking_uri)
    artifacts = "kept by the server" if cluster_profile else paths.mlflow_artifacts
    print(
        f"\nMLflow tracking URI: {public_uri(paths.mlflow_tracking_uri)}  (artifacts: {artifacts})"
    )
    if runs:
        latest = runs[0]
        print(
            f"  latest run {latest['run_id']}: test AUC {latest['test_auc']:.3f}, "
            f"training set {latest['training_set_rows']} rows, sha256 {latest['training_set_sha256']}"
        )
        print(
            f"  rebuild it:   .venv/bin/lakehouse reproduce {latest['run_id']} --out training_set.parquet"
        )
    print("  list runs:    .venv/bin/lakehouse runs")
    if not cluster_profile:
        print("\nDagster UI:     make dev   (then open http://127.0.0.1:3000)")
        print("Serve features: cd feature_repo && ../.venv/bin/feast serve -h 127.0.0.1 -p 6566")
        print(
            "                cd feature_repo && ../.venv/bin/feast get-online-features "
            "-e user_id=usr_0000001 -f user_activity:purchases_7d"
        )
        return 0
    feast_config = config_file(paths.data_dir)
    master_ui = os.environ["LAKEHOUSE_SPARK_MASTER"].rsplit(":", 1)
    print(f"  MLflow UI:    {public_uri(paths.mlflow_tracking_uri)}")
    print(
        f"\nSpark master:   {os.environ['LAKEHOUSE_SPARK_MASTER']}  (UI http://127.0.0.1:{int(master_ui[1]) + 1})"
    )
    print(
        'Point a shell at the cluster:  eval "$(.venv/bin/python scripts/cluster.py env)"   then, in it:'
    )
    print("Dagster UI:     make dev   (instance in PostgreSQL; then open http://127.0.0.1:3000)")
    print(
        f"Serve features: .venv/bin/feast -c feature_repo -f {feast_config} "
        "serve -h 127.0.0.1 -p 6566   (online store: Redis)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
