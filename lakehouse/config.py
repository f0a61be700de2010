"""Where the lakehouse keeps its files, derived from one environment variable.

`LAKEHOUSE_DATA_DIR` (default: `data/` at the repository root) holds the landing folder, the Delta
tables, the MLflow store, the Feast registry and online store, and the Dagster instance. Tests point
it at a temporary directory; the cluster profile moves the Delta root to object storage instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT / "data"


@dataclass(frozen=True)
class LakehousePaths:
    data_dir: Path

    @property
    def landing(self) -> Path:
        return self.data_dir / "landing"

    @property
    def delta_root(self) -> str:
        return os.environ.get("LAKEHOUSE_DELTA_ROOT") or str(self.data_dir / "delta")

    @property
    def mlflow_tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.data_dir / "mlartifacts"


def lakehouse_paths() -> LakehousePaths:
    return LakehousePaths(Path(os.environ.get("LAKEHOUSE_DATA_DIR") or DEFAULT_DATA_DIR).resolve())


def postgres_server(url: str) -> SplitResult:
    """LAKEHOUSE_PG_URL (`postgresql://user@host:port`), split. It names the server and user only: each
    component adds its database, and reads the password from LAKEHOUSE_PG_PASSWORD when it connects, so
    that no file written from the URL (dagster.yaml, feature_store.yaml) holds it. Anything more is refused."""
    server = urlsplit(url)
    if (
        server.password
        or server.path.strip("/")
        or server.query
        or server.fragment
        or not (server.username and server.hostname)
    ):
        raise ValueError(
            "LAKEHOUSE_PG_URL names the server and user only (postgresql://user@host:port); "
            "the password is LAKEHOUSE_PG_PASSWORD"
        )
    return server


def public_uri(uri: str) -> str:
    """`uri` without user info, query or fragment: what may be written into MLflow and metadata."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive letter)
        return uri
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return uri  # nothing to remove; rebuilding it would turn sqlite:////abs into sqlite://abs
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))
