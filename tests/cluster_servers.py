"""The cluster profile's servers for the test session: started once by `scripts/cluster.py up` under a
temporary data dir, on a free block of ports, and stopped (and purged) at the end."""

import functools
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys

import psutil
import psycopg2
import pytest

from lakehouse.config import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "cluster.py"


def free_block(size: int = 50) -> int:
    """A base port whose next `size` ports are all free. Each pytest worker searches its own range:
    two workers' stacks starting at once would find the same block."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    for base in range(21000 + 4000 * worker, 50000, 97):
        ports = range(base, base + size)
        try:
            sockets = []
            for p in ports:
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports")


@pytest.fixture(scope="session")
def cluster_stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster_data")
    env = {
        **os.environ,
        "LAKEHOUSE_DATA_DIR": str(data),
        "LAKEHOUSE_CLUSTER_PORT": str(free_block()),
    }
    up = subprocess.run(
        [sys.executable, SCRIPT, "up"], env=env, capture_output=True, text=True, timeout=600
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        printed = subprocess.run(
            [sys.executable, SCRIPT, "env"], env=env, capture_output=True, text=True, check=True
        ).stdout
        settings = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in printed.splitlines()
        )
        yield {"env": env, "settings": settings, "data": data}
    finally:
        started = (
            json.loads((data / "cluster" / "pids.json").read_text())
            if (data / "cluster" / "pids.json").exists()
            else {}
        )
        down = subprocess.run(
            [sys.executable, SCRIPT, "down", "--purge"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert down.returncode == 0, down.stdout + down.stderr
        alive = {
            name: pid
            for name, pid in started.items()
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        }
        assert not alive, f"still running after down: {alive}"


def storage_options(settings: dict, secret: str | None = None) -> dict:
    return {
        "AWS_ENDPOINT_URL": settings["AWS_ENDPOINT_URL"],
        "AWS_REGION": settings["AWS_REGION"],
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": settings["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": secret or settings["AWS_SECRET_ACCESS_KEY"],
    }


def postgres(settings: dict, database: str):
    return psycopg2.connect(
        f"{settings['LAKEHOUSE_PG_URL']}/{database}", password=settings["LAKEHOUSE_PG_PASSWORD"]
    )


def stack_credentials(stack: dict) -> dict[str, str]:
    """Every credential of the stack, the servers' own included, as `scripts/cluster.py` generated them."""
    path = stack["data"] / "cluster" / "credentials.env"
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@functools.cache
def cluster_script():
    """scripts/cluster.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cluster", SCRIPT)
    module = sys.modules["cluster"] = importlib.util.module_from_spec(
        spec
    )  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def spark_ui(stack: dict) -> dict[str, str]:
    """The header the stack's Spark web UIs ask for: a bearer token signed with its UI key."""
    return {
        "Authorization": f"Bearer {cluster_script().spark_ui_token(stack_credentials(stack)['LAKEHOUSE_SPARK_UI_KEY'])}"
    }


def running(stack: dict) -> dict[str, int]:
    """The servers' PIDs as `scripts/cluster.py` last recorded them (a restart changes them)."""
    return json.loads((stack["data"] / "cluster" / "pids.json").read_text())


def stop_server(stack: dict, name: str, sig: int = signal.SIGTERM) -> None:
    """Stop one server and everything it started (its process group), as a crash or an operator would."""
    pid = running(stack)[name]
    os.killpg(pid, sig)
    psutil.wait_procs([psutil.Process(pid)], timeout=60)


def start_stopped(stack: dict) -> None:
    """`scripts/cluster.py up`: start whatever is not running and wait until it is healthy."""
    up = subprocess.run(
        [sys.executable, SCRIPT, "up"],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, up.stdout + up.stderr
