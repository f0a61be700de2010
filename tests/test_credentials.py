"""Credentials stay out of what the lakehouse records and shows: URIs are scrubbed, secrets named, not copied."""

import pytest

from lakehouse.config import public_uri


@pytest.mark.parametrize(("uri", "public"), [
    ("s3://AKIAEXAMPLE:wJalrXUtnFEMI@lakehouse/delta/cleaned_events", "s3://lakehouse/delta/cleaned_events"),
    ("s3://lakehouse/delta/t?X-Amz-Signature=abc123&X-Amz-Credential=AKIA", "s3://lakehouse/delta/t"),
    ("postgresql://lakehouse:s3cr3t@127.0.0.1:5432/mlflow", "postgresql://127.0.0.1:5432/mlflow"),
    ("http://user:pw@127.0.0.1:5000/#frag", "http://127.0.0.1:5000/"),
    ("sqlite:////tmp/lake/mlflow.db", "sqlite:////tmp/lake/mlflow.db"),  # nothing to scrub: left exactly as it was
    ("/tmp/lake/delta/cleaned_events", "/tmp/lake/delta/cleaned_events"),
    ("file:///tmp/lake/mlartifacts", "file:///tmp/lake/mlartifacts"),
])
def test_public_uri_drops_user_info_query_and_fragment_only(uri, public):
    assert public_uri(uri) == public


def test_a_tracking_uri_from_the_environment_is_named_not_copied_into_resource_config(monkeypatch):
    secret = "pw-that-must-not-show"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://lakehouse:{secret}@127.0.0.1:5432/mlflow")
    from resources import resources_for

    resource = resources_for()["mlflow_tracking"]
    # What Dagster stores and shows for the resource: the variable's name.
    shown = resource.get_resource_definition().config_schema.as_field().default_value
    assert shown["tracking_uri"] == {"env": "MLFLOW_TRACKING_URI"}
    assert secret not in repr(shown) and secret not in repr(resource)
