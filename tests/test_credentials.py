"""Credentials stay out of what the lakehouse records and shows: URIs are scrubbed, secrets named, not
copied, and a setting that would copy one into a file is refused. The cluster profile without its
settings is refused by name, never served from the local profile's stores."""

import pytest

from lakehouse.config import public_uri


@pytest.mark.parametrize(
    ("uri", "public"),
    [
        (
            "s3://AKIAEXAMPLE:wJalrXUtnFEMI@lakehouse/delta/cleaned_events",
            "s3://lakehouse/delta/cleaned_events",
        ),
        (
            "s3://lakehouse/delta/t?X-Amz-Signature=abc123&X-Amz-Credential=AKIA",
            "s3://lakehouse/delta/t",
        ),
        (
            "postgresql://lakehouse:s3cr3t@127.0.0.1:5432/mlflow",
            "postgresql://127.0.0.1:5432/mlflow",
        ),
        ("http://user:pw@127.0.0.1:5000/#frag", "http://127.0.0.1:5000/"),
        (
            "sqlite:////tmp/lake/mlflow.db",
            "sqlite:////tmp/lake/mlflow.db",
        ),  # nothing to scrub: left exactly as it was
        ("/tmp/lake/delta/cleaned_events", "/tmp/lake/delta/cleaned_events"),
        ("file:///tmp/lake/mlartifacts", "file:///tmp/lake/mlartifacts"),
    ],
)
def test_public_uri_drops_user_info_query_and_fragment_only(uri, public):
    assert public_uri(uri) == public


def test_a_tracking_uri_from_the_environment_is_named_not_copied_into_resource_config(monkeypatch):
    secret = "pw-that-must-not-show"
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", f"postgresql://lakehouse:{secret}@127.0.0.1:5432/mlflow"
    )
    from resources import resources_for

    resource = resources_for()["mlflow_tracking"]
    # What Dagster stores and shows for the resource: the variable's name.
    shown = resource.get_resource_definition().config_schema.as_field().default_value
    assert shown["tracking_uri"] == {"env": "MLFLOW_TRACKING_URI"}
    assert secret not in repr(shown) and secret not in repr(resource)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://lakehouse:pw-that-must-not-show@127.0.0.1:5432",  # a password
        "postgresql://lakehouse@127.0.0.1:5432?password=pw-that-must-not-show",  # libpq's keyword for one
        "postgresql://lakehouse:pw-that-must-not-show@127.0.0.1:5432/feast",  # and a database
    ],
)
def test_a_password_in_the_postgres_url_is_refused_by_every_file_written_from_it(url, tmp_path):
    from lakehouse.features.feature_store import render_config
    from resources.instance import instance_config

    environ = {
        "LAKEHOUSE_PROFILE": "cluster",
        "LAKEHOUSE_PG_URL": url,
        "LAKEHOUSE_REDIS": "127.0.0.1:6379",
    }
    for render in (
        lambda: render_config(tmp_path, environ),
        lambda: instance_config(environ),
    ):  # feature_store.yaml, dagster.yaml
        with pytest.raises(
            ValueError, match="LAKEHOUSE_PG_URL names the server and user only"
        ) as refused:
            render()
        assert "pw-that-must-not-show" not in str(refused.value)


def test_the_postgres_url_without_a_password_names_the_variable_in_feast_config(tmp_path):
    from lakehouse.features.feature_store import render_config

    rendered = render_config(
        tmp_path,
        {
            "LAKEHOUSE_PROFILE": "cluster",
            "LAKEHOUSE_PG_URL": "postgresql://lakehouse@[::1]:5433",
            "LAKEHOUSE_REDIS": "127.0.0.1:6379",
        },
    )
    assert (
        "path: postgresql+psycopg2://lakehouse:${LAKEHOUSE_PG_PASSWORD}@[::1]:5433/feast\n"
        in rendered
    )


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["lineage", "some-run"],
        ["reproduce", "some-run", "--out", "x.parquet"],
        ["keep", "some-run"],
    ],
)
def test_the_cli_on_the_cluster_profile_without_its_tracking_server_is_refused_by_name(
    command, monkeypatch, tmp_path
):
    from lakehouse.cli import main

    monkeypatch.setenv("LAKEHOUSE_PROFILE", "cluster")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(
        "LAKEHOUSE_DATA_DIR", str(tmp_path)
    )  # the local profile's store would be here
    with pytest.raises(SystemExit, match="LAKEHOUSE_PROFILE=cluster needs MLFLOW_TRACKING_URI"):
        main(command)
    assert not (tmp_path / "mlflow.db").exists()


SPARK_WITH_KEYS = """
import os, sys
from lakehouse.engines.spark import get_spark
spark = get_spark("local[1]")
print(spark.sparkContext._jsc.hadoopConfiguration().get("fs.s3a.secret.key"))
jvms = [
    pid
    for pid in os.listdir("/proc")
    if pid.isdigit() and open(f"/proc/{pid}/stat").read().split()[3] == str(os.getpid())
]
print("\\0".join(open(f"/proc/{pid}/cmdline").read() for pid in jvms))
"""


@pytest.mark.spark
def test_the_object_store_keys_reach_spark_without_showing_on_any_command_line(tmp_path):
    """pyspark passes builder settings to spark-submit as --conf arguments, which `ps` shows every local user."""
    import os
    import subprocess
    import sys

    secret = "s3-secret-that-must-not-show"
    env = os.environ | {
        "AWS_ACCESS_KEY_ID": "lakehouse-key",
        "AWS_SECRET_ACCESS_KEY": secret,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    result = subprocess.run(
        [sys.executable, "-c", SPARK_WITH_KEYS],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen_by_spark, command_lines = result.stdout.split("\n", 1)
    assert seen_by_spark == secret
    assert "java" in command_lines and secret not in command_lines
