"""A throwaway Feast repo for tests: SQLite registry and online store, the Delta offline store."""

from datetime import datetime, timezone

from feast import Entity, FeatureStore, ValueType
from feast.repo_config import RegistryConfig, RepoConfig

from lakehouse.features.feast_delta import DeltaOfflineStoreConfig

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)


def at(hhmmss: str, day: str = "2026-03-02") -> datetime:
    return datetime.fromisoformat(f"{day} {hhmmss}").replace(tzinfo=timezone.utc)


def store_for(tmp_path, objects, provider: str = "local", feature_server: dict | None = None) -> FeatureStore:
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
