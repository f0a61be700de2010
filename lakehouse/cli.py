"""`lakehouse` command line: land synthetic events and print the landed window, list training runs,
reproduce a training set, keep a run rebuildable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from lakehouse.config import lakehouse_paths

# Module level: the standard library and lakehouse.config only. Each subcommand imports what it needs in
# its function, because mlflow, Feast, scikit-learn, pandas and Spark each cost seconds to import and
# `--help` needs none of them; `runs` needs none either (lakehouse.ml.reproduce reads a local MLflow
# store with sqlite3). tests/test_cli_imports.py keeps it that way.

RATES = (
    "duplicate_rate",
    "clock_skew_rate",
    "late_rate",
    "missing_field_rate",
    "anonymous_rate",
    "malformed_rate",
    "bom_rate",
)


def default_window(days: int = 30) -> tuple[date, int]:
    """The `days` full UTC days that end yesterday."""
    today = datetime.now(timezone.utc).date()
    return today - timedelta(days=days), days


def _generate(args: argparse.Namespace) -> int:
    from lakehouse.events.generator import GeneratorConfig, generate

    start = args.start or default_window(args.days)[0]
    landing = args.landing or lakehouse_paths().landing
    rates = {name: getattr(args, name) for name in RATES if getattr(args, name) is not None}
    if args.clean:
        rates = dict.fromkeys(RATES, 0.0) | {"drift_from": None}
    config = replace(GeneratorConfig(users=args.users, seed=args.seed), **rates)
    if args.drift_from is not None:
        config = replace(config, drift_from=None if args.drift_from == "never" else args.drift_from)
    manifest = generate(landing, start, args.days, config)
    landed = sum(
        manifest["days"][(start + timedelta(days=i)).isoformat()]["lines"] for i in range(args.days)
    )
    print(
        f"landed {landed} lines for {start}..{start + timedelta(days=args.days - 1)} in {landing}"
    )
    return 0


def _landed(args: argparse.Namespace) -> int:
    from lakehouse.tables.ingest import landed_days

    landing = args.landing or lakehouse_paths().landing
    days = sorted(landed_days(landing))
    if not days:
        print(f"error: no day folders (date=YYYY-MM-DD) in {landing}", file=sys.stderr)
        return 1
    first, last = days[0], days[-1]
    if args.last:
        first = max(first, last - timedelta(days=args.last - 1))
    print(f"{{start_date: {first}, end_date: {last}}}" if args.dbt_vars else f"{first}...{last}")
    return 0


def _tracking_uri() -> str:
    """The profile's MLflow store. The cluster profile's is its tracking server: without MLFLOW_TRACKING_URI
    it is refused by name, as the Dagster resources refuse it, rather than read the local profile's store."""
    if os.environ.get("LAKEHOUSE_PROFILE") == "cluster" and not os.environ.get(
        "MLFLOW_TRACKING_URI"
    ):
        raise SystemExit(
            "error: LAKEHOUSE_PROFILE=cluster needs MLFLOW_TRACKING_URI (for the servers of "
            '`make cluster-up`: eval "$(.venv/bin/python scripts/cluster.py env)")'
        )
    return lakehouse_paths().mlflow_tracking_uri


def _runs(args: argparse.Namespace) -> int:
    from lakehouse.ml.reproduce import training_runs

    runs = training_runs(_tracking_uri())
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print("no training runs yet")
    for r in runs:
        started = datetime.fromtimestamp(r["started"] / 1000, timezone.utc).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        inputs = " ".join(f"{name}@v{version}" for name, version in r["inputs"].items())
        print(
            f"{r['run_id']}  {started}  rows={r['training_set_rows']}  "
            f"sha256={r['training_set_sha256'][:16]}…  {inputs}"
        )
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from lakehouse.ml.reproduce import ReproductionError, reproduce

    paths = lakehouse_paths()
    try:
        result = reproduce(
            args.run_id, args.out, _tracking_uri(), paths.data_dir, rebuild=args.rebuild
        )
    except ReproductionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    how = (
        "rebuilt from the recorded tables at their Delta versions"
        if result.rebuilt
        else "from the run's snapshot"
    )
    print(
        f"wrote {result.rows} rows to {result.out} ({how}); sha256 {result.sha256} "
        f"(form {result.hash_form}) matches run {result.run_id}"
    )
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from lakehouse.ml.lineage import lineage_chain
    from lakehouse.ml.reproduce import ReproductionError, load_lineage

    try:
        lineage = load_lineage(_tracking_uri(), args.run_id)
    except ReproductionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    chain = lineage_chain(lineage)
    if args.json:
        print(
            json.dumps(
                {
                    role: [
                        {"depth": t.depth, "table": t.table, "version": t.version, "uri": t.uri}
                        for t in tables
                    ]
                    for role, tables in chain
                },
                indent=2,
            )
        )
        return 0
    print(
        f"run {args.run_id}: training set sha256={lineage.training_set_sha256} (form {lineage.training_set_hash_form}) "
        f"rows={lineage.training_set_rows} feature service {lineage.feature_service}"
    )
    for role, tables in chain:
        print(f"  {role}:")
        for t in tables:
            print(f"  {'  ' * t.depth}{t.table} v{t.version}  {t.uri}")
    return 0


def _keep(args: argparse.Namespace) -> int:
    # imported here: mlflow takes seconds to import; writing a tag needs its client
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from lakehouse.ml.retention import KEEP_TAG

    client = MlflowClient(_tracking_uri())
    try:
        if args.release:
            client.delete_tag(args.run_id, KEEP_TAG)
        else:
            client.set_tag(args.run_id, KEEP_TAG, "true")
    except MlflowException as exc:
        print(f"error: run {args.run_id}: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"run {args.run_id}: its input versions are {'no longer' if args.release else 'now'} kept by table maintenance"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="land deterministic synthetic events, one folder per day")
    gen.add_argument(
        "--start", type=date.fromisoformat, help="first day (default: 30 days before today)"
    )
    gen.add_argument("--days", type=int, default=30)
    gen.add_argument("--users", type=int, default=3000)
    gen.add_argument("--seed", type=int, default=7)
    for rate in RATES:
        gen.add_argument(
            f"--{rate.replace('_', '-')}",
            dest=rate,
            type=float,
            help="see lakehouse.events.generator.GeneratorConfig for the default",
        )
    gen.add_argument(
        "--drift-from",
        help=(
            "first day with the drifted price fields (YYYY-MM-DD, or 'never'; default: the middle day "
            "of the first window landed in the folder)"
        ),
    )
    gen.add_argument(
        "--clean", action="store_true", help="land events without any of the data problems"
    )
    gen.add_argument(
        "--landing", type=Path, help="landing folder (default: $LAKEHOUSE_DATA_DIR/landing)"
    )
    gen.set_defaults(func=_generate)

    landed = sub.add_parser(
        "landed", help="print the first and last landed day as a partition range, FIRST...LAST"
    )
    landed.add_argument(
        "--last", type=int, help="only the newest LAST days, up to the last landed one"
    )
    landed.add_argument(
        "--dbt-vars",
        action="store_true",
        help="print the range as the dbt models' vars: {start_date: FIRST, end_date: LAST}",
    )
    landed.add_argument(
        "--landing", type=Path, help="landing folder (default: $LAKEHOUSE_DATA_DIR/landing)"
    )
    landed.set_defaults(func=_landed)

    runs = sub.add_parser(
        "runs", help="list training runs with their training-set hash and input versions"
    )
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(func=_runs)

    rep = sub.add_parser(
        "reproduce", help="write a run's training set, verified against the hash the run logged"
    )
    rep.add_argument("run_id")
    rep.add_argument("--out", type=Path, required=True, help="parquet file to write")
    rep.add_argument(
        "--rebuild",
        action="store_true",
        help=(
            "recompute it through Feast from the tables and Delta versions the run recorded instead of "
            "reading the run's snapshot"
        ),
    )
    rep.set_defaults(func=_reproduce)

    lin = sub.add_parser(
        "lineage", help="print the table versions a training run was built from, down to raw_events"
    )
    lin.add_argument("run_id")
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(func=_lineage)

    keep = sub.add_parser(
        "keep",
        help="keep a training run's input versions through table maintenance, so it stays rebuildable",
    )
    keep.add_argument("run_id")
    keep.add_argument(
        "--release",
        action="store_true",
        help="stop keeping them (registered model versions stay pinned)",
    )
    keep.set_defaults(func=_keep)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
