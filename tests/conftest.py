import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cluster_servers import cluster_stack  # noqa: F401  (a session fixture: the servers start once)

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# The tests' data is dated from 2026-02; the default (the first landed day folder) depends on the machine's data dir.
os.environ.setdefault("LAKEHOUSE_PARTITIONS_START", "2026-01-01")


# `make test` runs pytest workers with --dist loadfile --no-loadscope-reorder: a module's tests stay on
# one worker, so that its fixtures are built once. The longest modules go first, so that no worker is
# left with one at the end. (Grouping modules with xdist_group does not work with pytest 9: xdist
# marks the group on an attribute pytest no longer reads.)
_LONGEST = ("test_cluster_lakehouse.py", "test_end_to_end.py", "test_cluster.py")
# The cluster modules are one unit of work: one worker runs them one after the other, so the servers
# start once, and the fault tests, which stop servers, never run beside the other module's runs.
_CLUSTER_MODULES = ("tests/test_cluster_lakehouse.py", "tests/test_cluster.py")


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: the suite also runs without xdist
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ClusterModulesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "the cluster modules" if scope in _CLUSTER_MODULES else scope

    return ClusterModulesTogether(config, log)


def pytest_collection_modifyitems(items):
    """Tests on a Spark session carry `spark`; they and the end-to-end ones are `slow`, which
    `pytest -m "not slow"` (the inner loop) leaves out."""
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
        if item.get_closest_marker("spark") or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.slow)
    items.sort(
        key=lambda item: (
            _LONGEST.index(item.path.name) if item.path.name in _LONGEST else len(_LONGEST)
        )
    )


# Transformations run on both engines; the Spark runs start a JVM, so they carry the `spark` marker.
ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(scope="session")
def spark():
    from lakehouse.engines.spark import get_spark

    return get_spark()


@pytest.fixture(scope="session", params=ENGINES)
def engine(request):
    from lakehouse.engines import engine_named

    return engine_named(request.param)


def frame(engine, rows, schema):
    """A DataFrame of `engine` holding `rows` (tuples in the schema's column order)."""
    import pyarrow as pa

    return engine.from_arrow(
        pa.Table.from_pylist(
            [dict(zip(schema.column_names, row)) for row in rows], schema=schema.arrow()
        ),
        schema,
    )


def rows_of(engine, df) -> list[dict]:
    return engine.to_arrow(df).to_pylist()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, server: subprocess.Popen, timeout: float, what: str = "server") -> None:
    """Poll `url` until it answers 2xx; fail if the server process exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        assert server.poll() is None, f"{what} exited with {server.returncode}"
        assert time.monotonic() < deadline, f"{what} did not answer {url} within {timeout:.0f} s"
        time.sleep(1)


def stop_servers(*servers: subprocess.Popen) -> None:
    """Stop servers started with `start_new_session=True`, and everything they started, by process group: all are
    told at once, then waited for."""
    running = [server for server in servers if server.poll() is None]
    for server in running:
        os.killpg(server.pid, signal.SIGTERM)
    for server in running:
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def chromium_executable() -> str:
    """The browser the UI tests drive: $LAKEHOUSE_CHROMIUM, else Debian's chromium (`make setup` installs it)."""
    path = os.environ.get("LAKEHOUSE_CHROMIUM") or shutil.which("chromium")
    assert path and os.access(path, os.X_OK), (
        "no chromium: `make setup` installs Debian's (apt-get install chromium), or set LAKEHOUSE_CHROMIUM"
    )
    return path


def artifacts_dir() -> Path:
    """Where tests leave what a person would look at (screenshots, server logs): $LAKEHOUSE_ARTIFACTS,
    else test-artifacts/."""
    from lakehouse.config import REPO_ROOT

    path = Path(os.environ.get("LAKEHOUSE_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def local_lake(tmp_path_factory):
    """The whole graph on the local profile over a 10-day window (tests/lakes.py), built once for the
    session: under xdist, by the first worker that asks, in the folder the workers' temp dirs share."""
    import lakes
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = (
            shared.parent
        )  # the workers' temp dirs' parent: this run of pytest's, shared by its workers
    with FileLock(shared / "local_lake.lock"):
        return lakes.local_lake(shared / "local_lake")
