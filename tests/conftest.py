import os
import socket
import subprocess
import time

import pytest
import requests

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark():
    from lakehouse.spark import get_spark

    return get_spark()


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
