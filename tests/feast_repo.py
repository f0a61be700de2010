"""A throwaway Feast repo for tests: SQLite registry and online store, the Delta offline store, and a
small `activity` feature table worked out by hand."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake
from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.repo_config import RegistryConfig, RepoConfig
from feast.types import Int64

from lakehouse.features.feast_delta import DeltaOfflineStoreConfig, DeltaSource

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)


def at(hhmmss: str, day: str = "2026-03-02") -> datetime:
    return datetime.fromisoformat(f"{day} {hhmmss}").replace(tzinfo=timezone.utc)


def store_for(
    tmp_path, objects, provider: str = "local", feature_server: dict | None = None
) -> FeatureStore:
    config = RepoConfig(
        project="test",
        provider=provider,
        registry=RegistryConfig(path=str(tmp_path / "registry.db")),
        online_store={"type": "sqlite", "path": str(tmp_path / "online.db")},
        offline_store=DeltaOfflineStoreConfig(),
        entity_key_serialization_version=3,
        repo_path=str(tmp_path),
        **({"feature_server": feature_server} if feature_server else {}),
    )
    store = FeatureStore(config=config)
    store.apply([USER, *objects])
    return store


def row(user, ts, value, created=None) -> dict:
    return {"user_id": user, "ts": at(ts), "created": at(created or ts), "value": value}


# Two rows of u1 share an event time; the one created later wins (unless it was created too late).
ACTIVITY = [
    row("u1", "10:00:00", 1),
    row("u1", "12:00:00", 2, created="12:05:00"),
    row("u1", "12:00:00", 3, created="12:10:00"),
    row("u2", "08:00:00", 20),
]
ACTIVITY_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("created", pa.timestamp("us", tz="UTC")),
        ("value", pa.int64()),
    ]
)


def write_activity(
    path, rows: list[dict] = ACTIVITY, mode: str = "overwrite", names: dict[str, str] | None = None
) -> Path:
    """`rows` as a Delta table at `path`; `names` stores columns under other names (user_id -> uid, ...)."""
    table = pa.Table.from_pylist(rows, schema=ACTIVITY_SCHEMA)
    write_deltalake(
        str(path),
        table.rename_columns([(names or {}).get(c, c) for c in table.column_names]),
        mode=mode,
    )
    return path


def activity_view(
    path, name="activity", ttl=timedelta(hours=2), dtype=Int64, **source_args
) -> FeatureView:
    source_args = {"timestamp_field": "ts", "created_timestamp_column": "created", **source_args}
    return FeatureView(
        name=name,
        entities=[USER],
        ttl=ttl,
        schema=[Field(name="value", dtype=dtype)],
        source=DeltaSource(name=f"{name}_source", path=str(path), **source_args),
    )
