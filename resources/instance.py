"""The Dagster instance of the profile: its home (DAGSTER_HOME) and `dagster.yaml` there.

Each profile has a home of its own under LAKEHOUSE_DATA_DIR (`HOMES`), so that running one never
rewrites the other's dagster.yaml; a DAGSTER_HOME set in the environment is used as it is.
local: Dagster's default SQLite storage under the home. cluster: run, event-log and schedule
storage on PostgreSQL (dagster-postgres), database `dagster` on the server LAKEHOUSE_PG_URL names.
The file holds no password: Dagster reads LAKEHOUSE_PG_PASSWORD from the environment when it connects.

The file is the project's while its first line is `GENERATED`, rewritten for the current profile
every time (`python -m resources.instance`, which `make dev` and the demo run, prints the home); a
dagster.yaml without that line is the user's own and is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from lakehouse.config import DEFAULT_DATA_DIR, postgres_server
from resources import profile_name

# The home of each profile (resources.PROFILES), under LAKEHOUSE_DATA_DIR.
HOMES = {"local": "dagster_home", "cluster": "dagster_home_cluster"}

GENERATED = (
    "# Written by resources/instance.py for LAKEHOUSE_PROFILE={profile}; "
    "delete this line to keep your own edits."
)
# What earlier versions of `make dev` and the demo wrote, without the line: theirs too.
_EARLIER = (
    "telemetry:\n  enabled: false\n",
    "telemetry:\n  enabled: false\n\ncode_servers:\n  local_startup_timeout: 600\n",
)
# Loading the definitions can take minutes on a busy machine: Dagster's 180 s for a code server to start is raised.
_COMMON = {"telemetry": {"enabled": False}, "code_servers": {"local_startup_timeout": 600}}


def instance_config(environ: Mapping[str, str] = os.environ) -> dict:
    if profile_name(environ) == "local":
        return dict(_COMMON)
    server = postgres_server(environ["LAKEHOUSE_PG_URL"])
    database = {
        "username": server.username,
        "password": {"env": "LAKEHOUSE_PG_PASSWORD"},
        "hostname": server.hostname,
        "port": server.port or 5432,
        "db_name": "dagster",
    }
    return _COMMON | {"storage": {"postgres": {"postgres_db": database}}}


def write_instance_config(home: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Write `home/dagster.yaml` for the profile, unless the file there is the user's own; returns its path."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if path.exists() and not (
        path.read_text().startswith(GENERATED.split("{", 1)[0]) or path.read_text() in _EARLIER
    ):
        return path
    path.write_text(
        GENERATED.format(profile=profile_name(environ))
        + "\n"
        + yaml.safe_dump(instance_config(environ), sort_keys=False)
    )
    return path


def dagster_home(environ: Mapping[str, str] = os.environ) -> Path:
    """DAGSTER_HOME when it is set, else the profile's own home under LAKEHOUSE_DATA_DIR."""
    if environ.get("DAGSTER_HOME"):
        return Path(environ["DAGSTER_HOME"])
    return _default_home(environ, profile_name(environ))


def _default_home(environ: Mapping[str, str], profile: str) -> Path:
    return Path(environ.get("LAKEHOUSE_DATA_DIR") or DEFAULT_DATA_DIR).resolve() / HOMES[profile]


def prepare_instance(environ: Mapping[str, str] = os.environ) -> Path:
    """The profile's Dagster home, its dagster.yaml written for the profile: what every entry point
    runs Dagster with."""
    home = dagster_home(environ)
    # Before the profiles had homes of their own, the cluster profile's dagster.yaml was written into
    # the local home (`make cluster-demo`), and the local profile then failed for want of
    # LAKEHOUSE_PG_PASSWORD. Whichever profile runs next gives it back to the local profile; its run
    # history there is kept (the cluster's runs are in PostgreSQL).
    local_home = _default_home(environ, "local")
    if (
        not environ.get("DAGSTER_HOME")
        and home != local_home
        and (local_home / "dagster.yaml").exists()
    ):
        write_instance_config(local_home, {**environ, "LAKEHOUSE_PROFILE": "local"})
    write_instance_config(home, environ)
    return home


if __name__ == "__main__":
    print(prepare_instance())
