"""The rest of Feast's offline-store contract on Delta, against answers worked out by hand.

Field mappings on every column, list types, Feast's tolerance of narrower declared numbers, created-
timestamp filtering, retrieval without entity rows, offline writes and push, feature logging, and
saved datasets. (Point-in-time semantics themselves are in test_feast_delta.py.)
"""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from feast import FeatureService, FeatureView, Field, PushSource
from feast.data_source import PushMode
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_logging import LoggingConfig
from feast.types import Array, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast_repo import ACTIVITY, USER, activity_view, at, store_for, write_activity

from lakehouse.features.feast_delta import (
    DeltaLoggingDestination,
    DeltaSource,
    DeltaSourceError,
    SavedDatasetDeltaStorage,
)
from lakehouse.features.served_features import flush_served_features, not_logged

TS = pa.timestamp("us", tz="UTC")


def delta(path, columns: dict[str, pa.Array]) -> Path:
    write_deltalake(str(path), pa.table(columns))
    return path


def values(frame: pd.DataFrame, column: str = "value") -> list:
    return [
        None if v is None or (not isinstance(v, (list, tuple)) and pd.isna(v)) else v
        for v in frame[column]
    ]


def retrieve(store, rows, refs=("activity:value",), **kwargs) -> pd.DataFrame:
    entity = pd.DataFrame([(u, at(t)) for u, t in rows], columns=["user_id", "event_timestamp"])
    return store.get_historical_features(entity_df=entity, features=list(refs), **kwargs).to_df()


def test_field_mapping_applies_to_the_timestamp_created_key_and_feature_columns(tmp_path):
    path = write_activity(
        tmp_path / "mapped",
        names={"user_id": "uid", "ts": "ts_1", "created": "created_1", "value": "raw_value"},
    )
    mapping = {"uid": "user_id", "ts_1": "ts", "created_1": "created", "raw_value": "value"}
    view = activity_view(path, field_mapping=mapping)
    view.batch_source.validate(None)  # what `feast apply` runs: the mapped timestamps exist
    store = store_for(tmp_path, [view])
    result = retrieve(
        store, [("u1", "09:00:00"), ("u1", "12:00:00"), ("u1", "14:00:01"), ("u2", "09:00:00")]
    )
    assert values(result) == [None, 3, None, 20]
    store.materialize(start_date=at("00:00:00"), end_date=at("23:00:00"))
    assert store.get_online_features(
        features=["activity:value"], entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}]
    ).to_dict()["value"] == [3, 20]


def test_list_columns_are_inferred_and_retrieved_as_feast_lists(tmp_path):
    path = delta(
        tmp_path / "lists",
        {
            "user_id": pa.array(["u1", "u2"]),
            "ts": pa.array([at("10:00:00"), at("10:00:00")], TS),
            "seen": pa.array([[at("09:00:00"), at("09:30:00")], []], pa.list_(TS)),
            "tags": pa.array([["a", "b"], None], pa.list_(pa.string())),
            "scores": pa.array([[1, 2, 3], [4]], pa.list_(pa.int64())),
        },
    )
    # No schema: Feast infers the features from the Delta columns.
    inferred = FeatureView(
        name="lists",
        entities=[USER],
        source=DeltaSource(name="lists_source", path=str(path), timestamp_field="ts"),
    )
    store = store_for(tmp_path, [inferred])
    dtypes = {f.name: f.dtype for f in store.get_feature_view("lists").features}
    assert dtypes == {"seen": Array(UnixTimestamp), "tags": Array(String), "scores": Array(Int64)}
    entity = pd.DataFrame({"user_id": ["u1", "u2"], "event_timestamp": [at("11:00:00")] * 2})
    result = store.get_historical_features(
        entity_df=entity, features=["lists:seen", "lists:tags", "lists:scores"]
    ).to_arrow()
    assert result["scores"].to_pylist() == [[1, 2, 3], [4]]
    assert result["tags"].to_pylist() == [["a", "b"], None]
    assert result["seen"].to_pylist() == [[at("09:00:00"), at("09:30:00")], []]


def test_narrower_declared_numbers_are_served_and_real_mismatches_fail_in_one_line(tmp_path):
    path = delta(
        tmp_path / "numbers",
        {
            "user_id": pa.array(["u1"]),
            "ts": pa.array([at("10:00:00")], TS),
            "count": pa.array([5], pa.int64()),
            "rate": pa.array([0.25], pa.float64()),
            "label": pa.array(["x"]),
        },
    )
    source = DeltaSource(name="numbers_source", path=str(path), timestamp_field="ts")
    narrow = FeatureView(
        name="numbers",
        entities=[USER],
        source=source,
        schema=[Field(name="count", dtype=Int32), Field(name="rate", dtype=Float32)],
    )
    store = store_for(tmp_path / "narrow", [narrow])
    result = retrieve(store, [("u1", "11:00:00")], refs=("numbers:count", "numbers:rate"))
    assert (int(result["count"][0]), float(result["rate"][0])) == (
        5,
        0.25,
    )  # stored values, as Feast's stores return them
    store.materialize(start_date=at("00:00:00"), end_date=at("23:00:00"))
    online = store.get_online_features(
        features=["numbers:count", "numbers:rate"], entity_rows=[{"user_id": "u1"}]
    ).to_dict()
    assert (online["count"], online["rate"]) == (
        [5],
        [0.25],
    )  # cast to Int32/Float32 when served; both exact

    for declared, column, message in (
        (String, "count", "feature 'count' is declared STRING but column 'count' of .* is int64"),
        (Float64, "label", "feature 'label' is declared DOUBLE but column 'label' of .* is string"),
        (Int64, "absent", r"columns \['absent'\] are not in"),
    ):
        wrong = FeatureView(
            name="numbers",
            entities=[USER],
            source=source,
            schema=[Field(name=column, dtype=declared)],
        )
        with pytest.raises(DeltaSourceError, match=message) as raised:
            retrieve(
                store_for(tmp_path / column, [wrong]),
                [("u1", "11:00:00")],
                refs=(f"numbers:{column}",),
            )
        assert "\n" not in str(raised.value)


def test_filter_by_created_timestamp_ignores_values_created_after_the_entity_time(tmp_path):
    store = store_for(tmp_path, [activity_view(write_activity(tmp_path / "activity"))])
    rows = [("u1", "12:07:00"), ("u1", "12:12:00"), ("u1", "12:03:00"), ("u2", "09:00:00")]
    # Feast's default: the latest created row wins, even one created after the entity time.
    assert values(retrieve(store, rows)) == [3, 3, 3, 20]
    # Known at the entity time: at 12:07 only the 12:05 row existed; at 12:03 neither, and the
    # 10:00 row is older than the 2-hour TTL.
    assert values(retrieve(store, rows, filter_by_created_timestamp=True)) == [2, 3, None, 20]


def test_retrieval_without_entity_rows_gives_each_key_and_time_in_the_window(tmp_path):
    store = store_for(tmp_path, [activity_view(write_activity(tmp_path / "activity"))])
    result = store.get_historical_features(
        features=["activity:value"], start_date=at("09:00:00"), end_date=at("12:30:00")
    ).to_df()
    assert list(
        zip(result["user_id"], pd.to_datetime(result["event_timestamp"], utc=True), result["value"])
    ) == [
        ("u1", pd.Timestamp(at("10:00:00")), 1),
        (
            "u1",
            pd.Timestamp(at("12:00:00")),
            3,
        ),  # two rows at 12:00: one entity row, the later created
    ]


def test_write_to_offline_store_and_push_append_one_commit_each_and_a_bad_batch_writes_nothing(
    tmp_path,
):
    path = write_activity(tmp_path / "activity")
    view = activity_view(path)
    push = PushSource(name="activity_push", batch_source=view.batch_source)
    pushed_view = FeatureView(
        name="pushed",
        entities=[USER],
        ttl=timedelta(hours=2),
        schema=[Field(name="value", dtype=Int64)],
        source=push,
    )
    store = store_for(tmp_path, [view, pushed_view])
    before = DeltaTable(str(path)).version()

    # Columns in another order, nanosecond pandas timestamps: reordered and cast to the table's schema.
    batch = pd.DataFrame(
        {"value": [7], "created": [at("13:00:00")], "user_id": ["u2"], "ts": [at("13:00:00")]}
    )
    store.write_to_offline_store("activity", batch, allow_registry_cache=False)
    assert DeltaTable(str(path)).version() == before + 1
    commit = DeltaTable(str(path)).history(1)[0]
    assert (
        commit["lakehouse.writer"] == "feast.offline_write_batch"
        and commit["lakehouse.feature_view"] == "activity"
    )

    store.push(
        "activity_push",
        pd.DataFrame(
            {"user_id": ["u1"], "ts": [at("13:30:00")], "created": [at("13:30:00")], "value": [8]}
        ),
        to=PushMode.OFFLINE,
    )
    assert DeltaTable(str(path)).version() == before + 2
    assert values(
        retrieve(store, [("u2", "13:00:00"), ("u1", "14:00:00"), ("u1", "13:00:00")])
    ) == [7, 8, 3]

    overflow = pd.DataFrame(
        {
            "user_id": ["u1", "u1"],
            "ts": [at("15:00:00")] * 2,
            "created": [at("15:00:00")] * 2,
            "value": [1.0, 1.5],
        }
    )
    with pytest.raises(
        DeltaSourceError, match="column 'value' \\(double\\) does not fit the stored int64"
    ):
        store.write_to_offline_store("activity", overflow, allow_registry_cache=False)
    assert DeltaTable(str(path)).version() == before + 2
    assert len(DeltaTable(str(path)).to_pyarrow_table()) == len(ACTIVITY) + 2


@pytest.fixture
def logging_store(tmp_path):
    view = activity_view(write_activity(tmp_path / "activity"))
    service = FeatureService(
        name="scoring",
        features=[view],
        logging_config=LoggingConfig(
            destination=DeltaLoggingDestination(path=str(tmp_path / "served"))
        ),
    )
    store = store_for(
        tmp_path,
        [view, service],
        provider="lakehouse.features.served_features.LoggingProvider",
        feature_server={
            "type": "local",
            "feature_logging": {"enabled": True, "flush_interval_secs": 3600},
        },
    )
    store.materialize(start_date=at("00:00:00"), end_date=at("23:00:00"))
    return store, tmp_path / "served"


def test_online_reads_through_a_logging_service_are_appended_to_delta(logging_store):
    store, served = logging_store
    service = store.get_feature_service("scoring")
    store.get_online_features(features=service, entity_rows=[{"user_id": "u1"}, {"user_id": "u9"}])
    store.get_online_features(
        features=service, entity_rows=[{"user_id": "u2"}], full_feature_names=True
    )
    with not_logged():
        store.get_online_features(features=service, entity_rows=[{"user_id": "u2"}])  # not traffic
    store.get_online_features(
        features=["activity:value"], entity_rows=[{"user_id": "u1"}]
    )  # no service: nothing to log

    assert flush_served_features(store) == 3
    logs = DeltaTable(str(served)).to_pandas().sort_values(["__request_id", "user_id"])
    assert sorted(logs["user_id"]) == ["u1", "u2", "u9"]
    by_user = logs.set_index("user_id")
    assert by_user.loc["u1", "activity__value"] == 3 and by_user.loc["u2", "activity__value"] == 20
    assert pd.isna(by_user.loc["u9", "activity__value"])
    # FieldStatus: 1 PRESENT, 3 NOT_FOUND.
    assert (
        by_user.loc["u1", "activity__value__status"],
        by_user.loc["u9", "activity__value__status"],
    ) == (1, 3)
    assert pd.Timestamp(by_user.loc["u1", "activity__value__timestamp"]) == pd.Timestamp(
        at("12:00:00")
    )
    assert (
        by_user.loc["u1", "__request_id"]
        == by_user.loc["u9", "__request_id"]
        != by_user.loc["u2", "__request_id"]
    )

    window = (
        store._get_provider()
        .retrieve_feature_service_logs(
            service,
            at("00:00:00", "2000-01-01"),
            at("00:00:00", "2100-01-01"),
            store.config,
            store.registry,
        )
        .to_df()
    )
    assert sorted(window["user_id"]) == ["u1", "u2", "u9"]


def test_feature_logs_written_as_parquet_files_and_read_by_the_feast_cli(logging_store, tmp_path):
    store, served = logging_store
    service = store.get_feature_service("scoring")
    store.get_online_features(features=service, entity_rows=[{"user_id": "u1"}])
    flush_served_features(store)
    # What Feast's Go server handed over: a directory of Parquet files.
    files = tmp_path / "spool"
    files.mkdir()
    DeltaTable(str(served)).to_pyarrow_dataset().to_table().to_pandas().to_parquet(
        files / "part-0.parquet"
    )
    store.write_logged_features(logs=files, source=service)
    assert len(DeltaTable(str(served)).to_pyarrow_table()) == 2
    assert DeltaTable(str(served)).version() == 1  # one commit per flush

    # A fresh process (the Feast CLI) decodes the destination from the registry.
    (tmp_path / "feature_store.yaml").write_text(
        "project: test\n"
        "provider: lakehouse.features.served_features.LoggingProvider\n"
        f"registry: {tmp_path / 'registry.db'}\n"
        f"online_store:\n  type: sqlite\n  path: {tmp_path / 'online.db'}\n"
        "offline_store:\n  type: lakehouse.features.feast_delta.DeltaOfflineStore\n"
        "entity_key_serialization_version: 3\n"
    )
    shown = subprocess.run(
        [
            Path(sys.executable).parent / "feast",
            "-c",
            str(tmp_path),
            "feature-services",
            "describe",
            "scoring",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert str(served) in shown.stdout and "DeltaLoggingDestination" in shown.stdout


def test_a_saved_dataset_is_a_delta_table_whose_recorded_version_survives_an_overwrite(tmp_path):
    store = store_for(tmp_path, [activity_view(write_activity(tmp_path / "activity"))])
    entity = pd.DataFrame(
        {"user_id": ["u1", "u2"], "event_timestamp": [at("12:30:00"), at("09:00:00")]}
    )
    first_job = store.get_historical_features(entity_df=entity, features=["activity:value"])
    saved = store.create_saved_dataset(
        from_=first_job,
        name="first",
        storage=SavedDatasetDeltaStorage(path=str(tmp_path / "saved")),
    )
    assert saved.storage.version == 0 and store.get_saved_dataset("first").storage.version == 0

    with pytest.raises(SavedDatasetLocationAlreadyExists):
        store.create_saved_dataset(
            from_=first_job,
            name="again",
            storage=SavedDatasetDeltaStorage(path=str(tmp_path / "saved")),
        )
    later = pd.DataFrame({"user_id": ["u1"], "event_timestamp": [at("10:30:00")]})
    second_job = store.get_historical_features(entity_df=later, features=["activity:value"])
    second = store.create_saved_dataset(
        from_=second_job,
        name="second",
        storage=SavedDatasetDeltaStorage(path=str(tmp_path / "saved")),
        allow_overwrite=True,
    )
    assert second.storage.version == 1
    assert (
        DeltaTable(str(tmp_path / "saved")).history(1)[0]["lakehouse.writer"]
        == "feast.saved_dataset"
    )

    # The first dataset still reads its own rows: version 0 of the table.
    first = store.get_saved_dataset("first").to_df().sort_values("user_id")
    assert list(zip(first["user_id"], first["value"])) == [("u1", 3), ("u2", 20)]
    assert list(store.get_saved_dataset("second").to_df()["value"]) == [1]


def test_the_skew_check_sees_each_users_last_served_row_of_the_newest_logged_day(tmp_path):
    from lakehouse.ml.serving_skew import logged_traffic

    view = activity_view(tmp_path / "unused")
    service = FeatureService(
        name="scoring",
        features=[view],
        logging_config=LoggingConfig(
            destination=DeltaLoggingDestination(path=str(tmp_path / "served"))
        ),
    )
    assert logged_traffic(service, ["value"], []) is None  # nothing logged yet
    logs = [  # (request, user, value, served at)
        ("r1", "u1", 1, at("23:00:00", "2026-03-01")),
        ("r2", "u1", 2, at("09:00:00")),
        ("r2", "u2", 5, at("09:00:00")),
        ("r3", "u1", 3, at("10:00:00")),
    ]
    write_deltalake(
        str(tmp_path / "served"),
        pa.table(
            {
                "user_id": [r[1] for r in logs],
                "activity__value": pa.array([r[2] for r in logs], pa.int64()),
                "__log_timestamp": pa.array([r[3] for r in logs], TS),
                "__log_date": pa.array([r[3].date() for r in logs], pa.date32()),
                "__request_id": [r[0] for r in logs],
            }
        ),
        partition_by=["__log_date"],
    )
    day, rows, requests = logged_traffic(service, ["value"], [])
    assert (str(day), requests) == ("2026-03-02", 2)
    assert sorted(zip(rows["user_id"], rows["value"])) == [("u1", 3), ("u2", 5)]


def test_a_failed_flush_keeps_the_served_reads_for_the_next_one(logging_store):
    store, served = logging_store
    served.write_text("a file where the log table should be")
    store.get_online_features(
        features=store.get_feature_service("scoring"),
        entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}],
    )
    with pytest.raises(DeltaError):
        flush_served_features(store)
    served.unlink()
    assert flush_served_features(store) == 2
    assert sorted(DeltaTable(str(served)).to_pandas()["user_id"]) == ["u1", "u2"]


def test_feasts_own_file_source_in_delta_format_is_read_and_written_too(tmp_path):
    from feast import FileSource
    from feast.data_format import DeltaFormat

    path = write_activity(tmp_path / "activity")
    source = FileSource(
        name="activity_file",
        path=str(path),
        file_format=DeltaFormat(),
        timestamp_field="ts",
        created_timestamp_column="created",
    )
    view = FeatureView(
        name="activity",
        entities=[USER],
        ttl=timedelta(hours=2),
        schema=[Field(name="value", dtype=Int64)],
        source=source,
    )
    store = store_for(tmp_path, [view])
    assert values(retrieve(store, [("u1", "12:00:00"), ("u2", "09:00:00")])) == [3, 20]
    store.write_to_offline_store(
        "activity",
        pd.DataFrame(
            {"user_id": ["u2"], "ts": [at("13:00:00")], "created": [at("13:00:00")], "value": [7]}
        ),
    )
    assert values(retrieve(store, [("u2", "13:30:00")])) == [7]
