"""The Dagster instance of the profile: `$DAGSTER_HOME/dagster.yaml`.

local: Dagster's default SQLite storage under DAGSTER_HOME. cluster: run, event-log and schedule
storage on PostgreSQL (dagster-postgres), database `dagster` on the server LAKEHOUSE_PG_URL names.
The file holds no password: Dagster reads LAKEHOUSE_PG_PASSWORD from the environment when it connects.

The file is the project's while its first line is `GENERATED`, rewritten for the current profile
every time (`python -m resources.instance`, which `make dev` and the demo run); a dagster.yaml
without that line is the user's own and is left alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from resources import profile_name

GENERATED = "# Written by resources/instance.py for LAKEHOUSE_PROFILE={profile}; delete this line to keep your own edits."
# What earlier versions of `make dev` and the demo wrote, without the line: theirs too.
_EARLIER = ("telemetry:\n  enabled: false\n", "telemetry:\n  enabled: false\n\ncode_servers:\n  local_startup_timeout: 600\n")
# Loading the definitions can take minutes on a busy machine: Dagster's 180 s for a code server to start is raised.
_COMMON = {"telemetry": {"enabled": False}, "code_servers": {"local_startup_timeout": 600}}


def instance_config(environ: Mapping[str, str] = os.environ) -> dict:
    if profile_name(environ) == "local":
        return dict(_COMMON)
    server = urlsplit(environ["LAKEHOUSE_PG_URL"])
    if server.password or server.path.strip("/"):
        raise ValueError("LAKEHOUSE_PG_URL names the server and user only (postgresql://user@host:port); the password is LAKEHOUSE_PG_PASSWORD")
    database = {
        "username": server.username, "password": {"env": "LAKEHOUSE_PG_PASSWORD"},
        "hostname": server.hostname, "port": server.port or 5432, "db_name": "dagster",
    }
    return _COMMON | {"storage": {"postgres": {"postgres_db": database}}}


def write_instance_config(home: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Write `home/dagster.yaml` for the profile, unless the file there is the user's own; returns its path."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    if path.exists() and not (path.read_text().startswith(GENERATED.split("{", 1)[0]) or path.read_text() in _EARLIER):
        return path
    path.write_text(GENERATED.format(profile=profile_name(environ)) + "\n" + yaml.safe_dump(instance_config(environ), sort_keys=False))
    return path


if __name__ == "__main__":
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit("DAGSTER_HOME is not set")
    print(write_instance_config(Path(home)))
