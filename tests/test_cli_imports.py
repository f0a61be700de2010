"""`lakehouse --help` and `lakehouse runs` answer without importing the heavy libraries (issue 11).

The import checks run in fresh interpreters, since this test process may have imported anything
already. No wall-clock assertions here: bench/cli.py measures the times. The last test compares the
standard-library reading of a local MLflow store (what `runs` and `reproduce` use) with MlflowClient's
on a real store; it takes longer, because it creates that store through MLflow.
"""

from __future__ import annotations

import ast
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("feast", "sklearn", "pyspark", "dagster", "mlflow.pyfunc", "matplotlib")
SUBCOMMANDS = ("generate", "runs", "reproduce", "lineage", "keep")


def _python(code: str, **env: str) -> str:
    """The last line `code` prints, run by this interpreter in a fresh process (MLFLOW_TRACKING_URI unset)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def _nan_as_text(value):
    """Metrics with NaN replaced by "nan", so that equal runs compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _nan_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_as_text(v) for v in value]
    return value


def test_importing_the_cli_imports_nothing_heavy():
    code = (
        f"import lakehouse.cli, sys; heavy=[m for m in {HEAVY!r} if m in sys.modules]; print(heavy)"
    )
    assert ast.literal_eval(_python(code)) == []


RUNS_LIGHT = (
    "import sys; from lakehouse.cli import main; code = main(['runs']); "
    f"print([code, [m for m in {(*HEAVY, 'mlflow', 'pandas', 'pyarrow')!r} if m in sys.modules]])"
)


def test_lakehouse_runs_imports_nothing_heavy(tmp_path):
    """The whole `runs` subcommand on an empty lake stays light: no MLflow, pandas or Arrow either."""
    result = ast.literal_eval(_python(RUNS_LIGHT, LAKEHOUSE_DATA_DIR=str(tmp_path)))
    assert result == [0, []]
    assert not (tmp_path / "mlflow.db").exists()  # listing runs does not create a store


def test_verifying_a_training_set_imports_no_model_libraries():
    """`reproduce` hashes the training set with lakehouse.ml.fingerprint, not the training module's scikit-learn."""
    code = (
        "import lakehouse.ml.fingerprint, lakehouse.ml.reproduce, sys; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert ast.literal_eval(_python(code)) == []


def test_lakehouse_help_lists_the_subcommands():
    lakehouse = Path(sys.executable).parent / "lakehouse"
    done = subprocess.run(
        [str(lakehouse), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    for name in SUBCOMMANDS:
        assert name in done.stdout


def test_local_store_reads_what_mlflow_client_reads(tmp_path, monkeypatch):
    """Runs listed and lineage loaded through sqlite3 equal MlflowClient's, on a store MLflow created."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from lakehouse.ml import reproduce
    from lakehouse.ml.lineage import EXPERIMENT, SNAPSHOT_ARTIFACT, InputTable, TrainingLineage

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking)
    experiment = client.create_experiment(
        EXPERIMENT, artifact_location=(tmp_path / "artifacts").as_uri()
    )
    snapshot = tmp_path / "training_set.parquet"
    pd.DataFrame({"user_id": ["a", "b"], "label": [0, 1]}).to_parquet(snapshot, index=False)

    def lineage(sha: str) -> TrainingLineage:
        inputs = (
            InputTable("labels", "training_labels", str(tmp_path / "delta" / "labels"), 3, 2),
        )
        return TrainingLineage(inputs, sha, 2, "svc", ("v:f1", "v:f2"), "proj")

    def run(
        start: int,
        tags: dict[str, str],
        status: str = "FINISHED",
        metrics: dict[str, float] | None = None,
    ) -> str:
        run_id = client.create_run(experiment, start_time=start, tags=tags).info.run_id
        for key, value in (metrics or {}).items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id, status)
        return run_id

    older = run(1_000, lineage("a" * 64).to_tags(), metrics={"test_auc": 0.7})
    tied = [
        run(2_000, lineage(c * 64).to_tags(), metrics={"test_auc": float("nan")}) for c in "bc"
    ]  # same start: ordered by run id
    run(3_000, {"note": "no lineage"})  # skipped by training_runs
    run(4_000, lineage("d" * 64).to_tags(), status="FAILED")  # not finished
    deleted = run(5_000, lineage("e" * 64).to_tags())
    client.delete_run(deleted)
    client.log_artifact(older, str(snapshot), artifact_path=str(Path(SNAPSHOT_ARTIFACT).parent))

    assert reproduce._LocalStore.of(tracking)._runs(
        "1 = 1", ()
    )  # the revision is the one this MLflow writes, or this reads nothing
    assert ast.literal_eval(_python(RUNS_LIGHT, LAKEHOUSE_DATA_DIR=str(tmp_path))) == [
        0,
        [],
    ]  # light on a store with runs too
    fast = reproduce.training_runs(tracking)
    fast_runs = {r: reproduce._stored_run(tracking, r) for r in (older, *tied, deleted)}
    fast_frame = reproduce._snapshot(fast_runs[older], tracking)
    with pytest.raises(reproduce.ReproductionError, match="no MLflow run"):
        reproduce._stored_run(tracking, "f" * 32)

    monkeypatch.setattr(
        reproduce._LocalStore, "of", classmethod(lambda cls, uri: None)
    )  # MlflowClient only from here
    slow = reproduce.training_runs(tracking)
    assert [r["run_id"] for r in fast] == [*sorted(tied), older]
    assert _nan_as_text(fast) == _nan_as_text(slow)
    for run_id, stored in fast_runs.items():
        slow_run = reproduce._stored_run(tracking, run_id)
        assert replace(stored, metrics=_nan_as_text(stored.metrics)) == replace(
            slow_run, metrics=_nan_as_text(slow_run.metrics)
        )
    pd.testing.assert_frame_equal(fast_frame, reproduce._snapshot(fast_runs[older], tracking))
    with pytest.raises(reproduce.ReproductionError, match="no MLflow run"):
        reproduce._stored_run(tracking, "f" * 32)


def test_loading_the_code_location_imports_no_library_that_only_runs_need():
    """`dagster dev` and every run worker import definitions first; on a busy machine each of these cost seconds."""
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); import definitions; "
        "print(sorted(m for m in ('pandas', 'pandera', 'pyspark', 'polars', 'mlflow', 'feast', "
        "'sklearn', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    assert _python(code) == "[]"
