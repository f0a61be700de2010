"""How long the `lakehouse` command takes to answer, against bare interpreter start-up on the same machine.

Each command runs as a fresh process, `--repeats` times (default 3), and the median wall time is
printed together with its ratio to `python -c "pass"` started the same way in the same run, so that
numbers from a loaded or slow machine stay comparable:
- `lakehouse --help`;
- `lakehouse runs` against a new empty LAKEHOUSE_DATA_DIR (a temporary folder per run, with
  MLFLOW_TRACKING_URI unset so that the store really is that folder's);
- if BENCH_RUN_ID is set, `lakehouse reproduce $BENCH_RUN_ID --out <tmp>.parquet` from the run's
  snapshot, against the lake of the calling environment (LAKEHOUSE_DATA_DIR, MLFLOW_TRACKING_URI).

It only measures; it asserts nothing about the times.

    .venv/bin/python bench/cli.py [--repeats 3]
    BENCH_RUN_ID=<run id> LAKEHOUSE_DATA_DIR=data .venv/bin/python bench/cli.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = Path(sys.executable)
LAKEHOUSE = PYTHON.parent / "lakehouse"  # the console script installed next to this interpreter


def wall_seconds(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - began, done


def median_of(name: str, repeats: int, run_once) -> float:
    """Median wall time of `repeats` calls of `run_once() -> (seconds, completed process)`; says so if one failed."""
    seconds = []
    for _ in range(repeats):
        took, done = run_once()
        seconds.append(took)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            print(f"  note: {name} exited {done.returncode}: {tail[0]}")
    return statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not LAKEHOUSE.exists():
        print(
            f"no lakehouse script next to {PYTHON}; install the project (uv sync) first",
            file=sys.stderr,
        )
        return 2

    caller_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        root = Path(tmp)
        empty_lakes = iter(range(1_000_000))

        def empty_lake_env() -> dict[str, str]:
            data = (
                root / f"lake{next(empty_lakes)}"
            )  # new and empty for every run: nothing left by the previous one
            data.mkdir()
            env = {k: v for k, v in caller_env.items() if k != "MLFLOW_TRACKING_URI"}
            return env | {"LAKEHOUSE_DATA_DIR": str(data)}

        commands = {
            "lakehouse --help": lambda: wall_seconds([str(LAKEHOUSE), "--help"], caller_env),
            "lakehouse runs": lambda: wall_seconds([str(LAKEHOUSE), "runs"], empty_lake_env()),
        }
        run_id = os.environ.get("BENCH_RUN_ID")
        if run_id:
            out = root / "reproduced.parquet"
            commands[f"lakehouse reproduce {run_id}"] = lambda: wall_seconds(
                [str(LAKEHOUSE), "reproduce", run_id, "--out", str(out)], caller_env
            )

        reference = median_of(
            "python -c pass",
            args.repeats,
            lambda: wall_seconds([str(PYTHON), "-c", "pass"], caller_env),
        )
        print(f"python -c pass: {reference:.2f} s median ({args.repeats} runs), the reference")
        for name, run_once in commands.items():
            median = median_of(name, args.repeats, run_once)
            print(
                f"{name}: {median:.2f} s median ({args.repeats} runs), "
                f"{median / reference:.1f}x bare interpreter start ({reference:.2f} s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
