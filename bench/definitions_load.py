"""How long loading the Dagster code location takes, against importing Dagster alone in the same run.

`dagster dev` and every run worker import `definitions` before anything else happens; when that took
83 s on a busy machine, `dagster dev` gave up on its code server. Each import runs in a fresh
process, `--repeats` times (default 5); the median of `import definitions` is printed with its
ratio to the median of `import dagster, dagster_dbt` (the floor: the decorators need both), so
numbers from a loaded machine stay comparable. It also lists heavy libraries that loading pulled
in: each one costs seconds and is only needed inside a run.

It only measures; it asserts nothing about the times.

    .venv/bin/python bench/definitions_load.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HEAVY = (
    "pandas",
    "pandera",
    "pyspark",
    "polars",
    "mlflow",
    "feast",
    "sklearn",
    "matplotlib",
    "scipy",
)
TIMED = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
began = time.perf_counter()
{statement}
print(json.dumps({{"seconds": time.perf_counter() - began, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def timed_import(statement: str) -> dict:
    code = TIMED.format(statement=statement, heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    floor = [timed_import("import dagster, dagster_dbt")["seconds"] for _ in range(repeats)]
    runs = [timed_import("import definitions") for _ in range(repeats)]
    floor_s, load_s = statistics.median(floor), statistics.median(r["seconds"] for r in runs)
    print(f"import dagster, dagster_dbt  median {floor_s:6.2f} s  ({repeats} runs)")
    print(
        f"import definitions           median {load_s:6.2f} s  = {load_s / floor_s:.2f}x the floor"
    )
    print(f"heavy libraries loaded by definitions: {', '.join(runs[-1]['loaded']) or 'none'}")


if __name__ == "__main__":
    main()
