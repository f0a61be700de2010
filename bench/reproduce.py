"""Reproducing a run's training set against building it, timed in one process on the same lake.

A temporary lake of synthetic feature tables (tests/synthetic_features.py) gets the Feast repo
applied and one training run logged through the same functions the training asset uses. Then,
interleaved, `--repeats` times each:
- build: pin every input to its current version, Feast historical retrieval, leakage audit,
  canonical form and SHA-256 (what the asset does before it trains), the reference;
- reproduce: the run's snapshot from MLflow, hash-verified (`lakehouse reproduce RUN_ID`);
- rebuild: the retrieval replayed at the run's pinned versions, hash-verified (`--rebuild`);
- the SHA-256 alone, in each form (lakehouse.ml.fingerprint.FORMS), of the built training set.

    .venv/bin/python bench/reproduce.py [--users 10000] [--days 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# The bench lands its lake with tests/synthetic_features.py: test code, kept out of the installed package.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory(prefix="bench-reproduce-") as tmp:
        data = Path(tmp)
        os.environ["LAKEHOUSE_DATA_DIR"] = str(
            data
        )  # before anything reads it: the Feast repo resolves its paths on import
        tracking_uri = f"sqlite:///{data / 'mlflow.db'}"
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri

        from synthetic_features import land_feature_days

        from lakehouse.features.feature_store import apply_definitions, open_store
        from lakehouse.ml.evaluation import evaluation_figures
        from lakehouse.ml.fingerprint import FORMS, content_sha256
        from lakehouse.ml.reproduce import training_set_of
        from lakehouse.ml.tracking import log_training_run
        from lakehouse.ml.training import train_purchase_model
        from lakehouse.ml.training_set import build_training_set, current_inputs, lineage_of
        from lakehouse.tables.storage import DeltaStore
        from resources.mlflow import MlflowTracking

        store = DeltaStore(str(data / "delta"))
        rng = np.random.default_rng(0)
        land_feature_days(store, rng, rng.gamma(2.0, 0.4, args.users), range(args.days))
        feast_store = open_store(data)
        apply_definitions(feast_store)

        def build():
            inputs = current_inputs(store, feast_store)
            built = build_training_set(feast_store, inputs)
            return built.frame, inputs, content_sha256(built.frame)

        frame, inputs, sha256 = build()
        trained = train_purchase_model(frame, list(frame.columns[3:]))
        MlflowTracking(
            tracking_uri=tracking_uri, artifact_root=(data / "mlartifacts").as_uri()
        ).activate()
        run_id = log_training_run(
            "bench",
            trained,
            frame,
            lineage_of(feast_store, frame, inputs),
            {},
            evaluation_figures(trained.test_labels, trained.test_scores, trained.importance),
        ).run_id
        print(
            f"training set: {len(frame):,} rows x {frame.shape[1]} columns, sha256 {sha256[:16]}…, run {run_id}"
        )

        ways = {
            "build (reference)": lambda: build()[0],
            "reproduce (snapshot)": lambda: training_set_of(run_id, tracking_uri, data),
            "reproduce --rebuild": lambda: training_set_of(
                run_id, tracking_uri, data, rebuild=True
            ),
        }
        digests = {
            f"sha256 {form}": (lambda form=form: content_sha256(frame, form)) for form in FORMS
        }
        seconds: dict[str, list[float]] = {name: [] for name in [*ways, *digests]}
        for _ in range(args.repeats):
            for name, way in [*ways.items(), *digests.items()]:
                began = time.perf_counter()
                result = way()
                seconds[name].append(time.perf_counter() - began)
                if name in ways:
                    assert content_sha256(result) == sha256, name

    reference = statistics.median(seconds["build (reference)"])
    print(f"\n{'':24}{'median s':>10}{'runs (s)':>28}{'vs build':>10}")
    for name, times in seconds.items():
        median = statistics.median(times)
        print(
            f"{name:24}{median:>10.2f}{' '.join(f'{t:.2f}' for t in times):>28}{median / reference:>9.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
