"""What a new user meets first: what `make demo` installs, and the README's commands on a lake `make demo` lands."""

import os
import re
import shlex
import subprocess
from datetime import timedelta

import yaml

from lakehouse.cli import default_window
from lakehouse.config import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _make_dry_run(target: str) -> str:
    """Every command `make <target>` runs on a fresh clone (-B: as if nothing were built yet; -n: printed, not run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "-nB", target], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout


def test_make_demo_installs_neither_the_browser_nor_the_servers_and_make_test_installs_both():
    demo, test, cluster_up = (_make_dry_run(target) for target in ("demo", "test", "cluster-up"))
    assert "scripts/demo.py" in demo and "uv sync" in demo
    assert "check_prereqs.sh chromium" not in demo and "check_prereqs.sh servers" not in demo
    assert "check_prereqs.sh chromium" in test and "check_prereqs.sh servers" in test
    assert "check_prereqs.sh servers" in cluster_up


def _shell(expression: str, env: dict, cwd=REPO_ROOT) -> str:
    """What bash makes of a README expression such as "$(.venv/bin/lakehouse landed)"."""
    return subprocess.run(
        ["bash", "-c", f"printf %s {expression}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_readme_commands_name_partitions_of_the_lake_they_land(tmp_path, monkeypatch):
    from dagster import DailyPartitionsDefinition

    from assets.partitions import partitions_start

    env = {k: v for k, v in os.environ.items() if k != "LAKEHOUSE_PARTITIONS_START"} | {
        "LAKEHOUSE_DATA_DIR": str(tmp_path)
    }
    (generate_line,) = [
        line for line in README.splitlines() if line.startswith(".venv/bin/lakehouse generate")
    ]
    # The README's command as it is, with fewer users (the window does not depend on them) to keep the test short.
    subprocess.run(
        [*shlex.split(generate_line, comments=True), "--users", "30"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        check=True,
    )
    start, days = default_window(30)  # the window `make demo` lands
    landed = sorted(p.name for p in (tmp_path / "landing").glob("date=*"))
    assert landed == [f"date={start + timedelta(days=i)}" for i in range(days)]

    # The partitions of that lake, as assets/partitions.py defines them.
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAKEHOUSE_PARTITIONS_START", raising=False)
    partitions = DailyPartitionsDefinition(start_date=partitions_start().isoformat())

    (partition_range,) = re.findall(r"--partition-range (\"[^\"]*\"|\S+)", README)
    first, last = _shell(partition_range, env).split("...")
    assert (first, last) == (start.isoformat(), (start + timedelta(days=days - 1)).isoformat())
    assert partitions.has_partition_key(first) and partitions.has_partition_key(last)

    # The dbt models' one-week rebuild: the newest 7 landed days.
    (dbt_vars,) = re.findall(r"--vars (\"[^\"]*\")", README)
    window = yaml.safe_load(_shell(dbt_vars, env, cwd=REPO_ROOT / "dbt"))
    assert window == {
        "start_date": start + timedelta(days=days - 7),
        "end_date": start + timedelta(days=days - 1),
    }
