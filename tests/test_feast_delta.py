"""The Delta offline store through the Feast SDK, against answers worked out by hand.

Each test builds a throwaway Feast repo (SQLite registry and online store, the Delta offline store)
over Delta tables written with deltalake.
"""

from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from feast import FeatureStore, FeatureView, Field
from feast.repo_config import RegistryConfig, RepoConfig
from feast.types import Int64, String
from feast_repo import ACTIVITY, USER, activity_view, at, row, store_for, write_activity
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.features.feast_delta import DeltaOfflineStore, DeltaSource, DeltaSourceError, pinned
from lakehouse.features.point_in_time import ViewRead, point_in_time_join
from lakehouse.ml.leakage import leakage_violations


@pytest.fixture
def features(tmp_path):
    write_activity(tmp_path / "activity", ACTIVITY)
    return tmp_path / "activity"


def retrieve(
    store, entity_rows, refs=("activity:value",), full_feature_names=False
) -> pd.DataFrame:
    entity = pd.DataFrame(entity_rows, columns=["user_id", "event_timestamp", "label"])
    return store.get_historical_features(
        entity_df=entity, features=list(refs), full_feature_names=full_feature_names
    ).to_df()


def test_point_in_time_edge_cases_match_the_hand_worked_answers(tmp_path, features):
    store = store_for(tmp_path, [activity_view(features)])
    rows = [
        ("u1", at("09:00:00"), "no earlier feature row"),
        ("u1", at("10:00:00"), "a row exactly at the entity time"),
        ("u1", at("12:00:00"), "two rows at one event time"),
        ("u1", at("14:00:00"), "exactly at the TTL boundary"),
        ("u1", at("14:00:01"), "one second past the TTL"),
        ("u1", at("12:00:00"), "a duplicate entity row"),
        ("u9", at("12:00:00"), "an entity that never appears"),
        ("u2", at("09:00:00"), "another entity"),
    ]
    result = retrieve(store, rows)
    assert list(result.columns) == ["user_id", "event_timestamp", "label", "value"]
    assert list(result["label"]) == [
        r[2] for r in rows
    ]  # entity rows come back in their order, all of them
    expected = [None, 1, 3, 3, None, 3, None, 20]
    assert [None if pd.isna(v) else int(v) for v in result["value"]] == expected


def test_full_feature_names_and_two_views_in_one_call(tmp_path, features):
    write_activity(tmp_path / "other", [row("u1", "11:00:00", 100), row("u2", "07:00:00", 200)])
    store = store_for(
        tmp_path,
        [activity_view(features), activity_view(tmp_path / "other", name="other", ttl=None)],
    )
    result = retrieve(
        store,
        [("u1", at("12:30:00"), "a"), ("u2", at("23:00:00"), "b")],
        refs=("activity:value", "other:value"),
        full_feature_names=True,
    )
    assert list(result.columns) == [
        "user_id",
        "event_timestamp",
        "label",
        "activity__value",
        "other__value",
    ]
    # u2 at 23:00: activity's 08:00 row is 15 h old (TTL 2 h); other has no TTL.
    assert [None if pd.isna(v) else int(v) for v in result["activity__value"]] == [3, None]
    assert list(result["other__value"]) == [100, 200]


def test_a_pinned_retrieval_returns_the_old_values_after_overwrite_delete_and_compaction(
    tmp_path, features
):
    store = store_for(tmp_path, [activity_view(features)])
    entity = [("u1", at("12:30:00"), ""), ("u2", at("09:00:00"), "")]
    before = retrieve(store, entity)
    write_activity(
        features, [row("u1", "12:00:00", 99, created="13:00:00"), row("u2", "08:00:00", 98)]
    )  # overwrite: version 1
    DeltaTable(str(features)).delete("user_id = 'u2'")  # version 2
    write_activity(features, [row("u1", "12:15:00", 97)], mode="append")  # version 3
    DeltaTable(str(features)).optimize.compact()  # version 4
    assert DeltaTable(str(features)).version() == 4

    latest = retrieve(store, entity)
    assert [None if pd.isna(v) else int(v) for v in latest["value"]] == [97, None]
    job = DeltaOfflineStore.get_historical_features(
        config=store.config,
        feature_views=[pinned(store.get_feature_view("activity"), 0)],
        feature_refs=["activity:value"],
        entity_df=pd.DataFrame(entity, columns=["user_id", "event_timestamp", "label"]),
        registry=store.registry,
        project=store.project,
    )
    pd.testing.assert_frame_equal(job.to_df(), before)


def test_materialize_loads_the_latest_row_per_entity_and_online_reads_it(tmp_path, features):
    store = store_for(tmp_path, [activity_view(features)])
    store.materialize(start_date=at("00:00:00"), end_date=at("23:59:59"))
    online = store.get_online_features(
        features=["activity:value"],
        entity_rows=[{"user_id": "u1"}, {"user_id": "u2"}, {"user_id": "u9"}],
    ).to_dict()
    assert online["value"] == [3, 20, None]


def test_clear_errors_for_a_missing_table_a_missing_column_and_a_type_mismatch(tmp_path, features):
    missing = activity_view(tmp_path / "nowhere")
    with pytest.raises(DeltaSourceError, match="no Delta table at .*nowhere"):
        missing.batch_source.validate(None)  # what `feast apply` runs
    with pytest.raises(DeltaSourceError, match="no Delta table at .*nowhere"):
        retrieve(store_for(tmp_path / "a", [missing]), [("u1", at("12:00:00"), "")])
    with pytest.raises(DeltaSourceError, match="timestamp_field 'when' is not a column"):
        DeltaSource(path=str(features), timestamp_field="when").validate(None)
    wrong = FeatureView(
        name="activity",
        entities=[USER],
        ttl=timedelta(hours=2),
        schema=[Field(name="value", dtype=String)],
        source=DeltaSource(name="s", path=str(features), timestamp_field="ts"),
    )
    store = store_for(tmp_path / "b", [wrong])
    with pytest.raises(DeltaSourceError, match="declared STRING but column 'value'"):
        retrieve(store, [("u1", at("12:00:00"), "")])


def reference_join(
    feature_rows: list[dict], entity_rows: list[tuple], ttl: timedelta | None
) -> list:
    """The slow, obviously correct join: for each entity row, scan every feature row."""
    values = []
    for user, when in entity_rows:
        candidates = [
            r
            for r in feature_rows
            if r["user_id"] == user and r["ts"] <= when and (ttl is None or r["ts"] >= when - ttl)
        ]
        best = max(candidates, key=lambda r: (r["ts"], r["created"]), default=None)
        values.append(None if best is None else best["value"])
    return values


minutes = st.integers(min_value=0, max_value=90)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.dictionaries(
        st.tuples(st.sampled_from("abc"), minutes, st.integers(0, 3)),
        st.integers(-1000, 1000),
        max_size=40,
    ),
    entities=st.lists(st.tuples(st.sampled_from("abcz"), st.integers(0, 120)), max_size=30),
    ttl_minutes=st.none() | st.integers(1, 60),
)
def test_the_store_agrees_with_a_reference_join_on_random_data(
    tmp_path, rows, entities, ttl_minutes
):
    base = at("00:00:00")
    feature_rows = [
        {
            "user_id": u,
            "ts": base + timedelta(minutes=m),
            "created": base + timedelta(minutes=m, seconds=c),
            "value": v,
        }
        for (u, m, c), v in rows.items()
    ]
    entity_rows = [(u, base + timedelta(minutes=m)) for u, m in entities]
    ttl = timedelta(minutes=ttl_minutes) if ttl_minutes else None
    path = tmp_path / f"random_{abs(hash((tuple(rows.items()), tuple(entities), ttl_minutes)))}"
    write_activity(path, feature_rows)
    read = ViewRead(
        name="random",
        data=DeltaTable(str(path)).to_pyarrow_dataset(),
        timestamp="ts",
        created="created",
        join_keys=("user_id",),
        entity_keys=("user_id",),
        features=("value",),
        outputs=("value",),
        ttl=ttl,
    )
    entity = pa.table(
        {
            "user_id": pa.array([u for u, _ in entity_rows], pa.string()),
            "event_timestamp": pa.array([t for _, t in entity_rows], pa.timestamp("us", tz="UTC")),
        }
    )
    result = point_in_time_join(entity, "event_timestamp", [read])
    assert result.column("user_id").to_pylist() == [u for u, _ in entity_rows]
    assert result.column("value").to_pylist() == reference_join(feature_rows, entity_rows, ttl)


def test_same_answers_as_feasts_own_spark_offline_store_on_random_rows(spark, tmp_path):
    """Differential: Feast's Spark store (SparkSource over the same Delta table, delta-spark) is the oracle."""
    import random

    from feast.infra.offline_stores.contrib.spark_offline_store.spark import SparkOfflineStoreConfig
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.table_format import DeltaFormat

    rng = random.Random(11)
    base = at("00:00:00")
    users = [f"u{i:03d}" for i in range(150)]
    seen, feature_rows = set(), []
    while len(feature_rows) < 3000:
        key = (
            rng.choice(users),
            rng.randrange(0, 3 * 24 * 60, 7),
            rng.randrange(0, 3),
        )  # 7-minute grid: many same-time ties
        if key not in seen:
            seen.add(key)
            feature_rows.append(
                {
                    "user_id": key[0],
                    "ts": base + timedelta(minutes=key[1]),
                    "created": base + timedelta(minutes=key[1], seconds=key[2]),
                    "value": rng.randrange(-(10**6), 10**6),
                }
            )
    path = tmp_path / "random"
    write_activity(path, feature_rows)
    entity = pd.DataFrame(
        [
            (
                rng.choice(users + ["nobody"]),
                base + timedelta(minutes=rng.randrange(0, 4 * 24 * 60)),
                i,
            )
            for i in range(2000)
        ],
        columns=["user_id", "event_timestamp", "label"],
    )
    entity = pd.concat([entity, entity.head(50)], ignore_index=True)  # duplicate entity rows too
    ttl = timedelta(hours=5)

    ours = store_for(tmp_path / "delta_store", [activity_view(path, ttl=ttl)])
    theirs_config = RepoConfig(
        project="test",
        provider="local",
        registry=RegistryConfig(path=str(tmp_path / "spark_registry.db")),
        online_store={"type": "sqlite", "path": str(tmp_path / "spark_online.db")},
        offline_store=SparkOfflineStoreConfig(spark_conf={}),
        entity_key_serialization_version=3,
    )
    theirs = FeatureStore(config=theirs_config)
    spark_source = SparkSource(
        name="activity_spark",
        path=str(path),
        table_format=DeltaFormat(),
        timestamp_field="ts",
        created_timestamp_column="created",
    )
    theirs.apply(
        [
            USER,
            FeatureView(
                name="activity",
                entities=[USER],
                ttl=ttl,
                schema=[Field(name="value", dtype=Int64)],
                source=spark_source,
            ),
        ]
    )

    def normalized(frame: pd.DataFrame) -> list[tuple]:
        stamps = pd.to_datetime(frame["event_timestamp"], utc=True)
        values = [None if pd.isna(v) else int(v) for v in frame["value"]]
        return sorted(
            zip(frame["label"], frame["user_id"], stamps, values),
            key=lambda r: (r[0], r[1], r[2], r[3] is None, r[3] or 0),
        )

    got = ours.get_historical_features(entity_df=entity, features=["activity:value"]).to_df()
    expected = theirs.get_historical_features(entity_df=entity, features=["activity:value"]).to_df()
    assert len(got) == len(entity) == len(expected)
    assert normalized(got) == normalized(expected)
    assert (
        sum(v is not None for *_, v in normalized(got)) > 500
    )  # most rows match something: the comparison has teeth


def test_the_leakage_audit_passes_a_point_in_time_join_and_fails_a_leaky_one(tmp_path, features):
    store = store_for(tmp_path, [activity_view(features)])
    entity = pd.DataFrame(
        [("u1", at("11:00:00"), ""), ("u1", at("13:00:00"), ""), ("u2", at("09:00:00"), "")],
        columns=["user_id", "event_timestamp", "label"],
    )
    job = DeltaOfflineStore.get_historical_features(
        config=store.config,
        feature_views=[store.get_feature_view("activity")],
        feature_refs=["activity:value"],
        entity_df=entity,
        registry=store.registry,
        project=store.project,
        feature_timestamps=True,
    )
    honest = job.to_df()
    assert list(pd.to_datetime(honest["activity__feature_timestamp"], utc=True)) == [
        at("10:00:00"),
        at("12:00:00"),
        at("08:00:00"),
    ]
    assert leakage_violations(honest, {"activity": timedelta(hours=2)}) == {}

    # The classic mistake: join each entity to its user's latest feature row, whatever the time.
    latest = pd.DataFrame(ACTIVITY).sort_values(["ts", "created"]).groupby("user_id").tail(1)
    leaky = entity.merge(
        latest.rename(columns={"ts": "activity__feature_timestamp"}), on="user_id", how="left"
    )
    assert leakage_violations(leaky, {"activity": timedelta(hours=2)}) == {
        "activity": {"rows_with_future_features": 1, "rows_with_features_older_than_ttl": 0}
    }
    # And a stale one: the TTL is 2 hours, the row is 5 hours old.
    stale = honest.assign(event_timestamp=honest["event_timestamp"] + pd.Timedelta(hours=3))
    assert (
        leakage_violations(stale, {"activity": timedelta(hours=2)})["activity"][
            "rows_with_features_older_than_ttl"
        ]
        == 3
    )


def test_incremental_loads_and_the_online_offline_consistency_check(tmp_path, features):
    from lakehouse.features.feature_store import materialize_incremental, online_offline_mismatches

    store = store_for(tmp_path, [activity_view(features)])
    first = materialize_incremental(store, at("12:00:00"))
    assert first == (
        at("10:00:01"),
        at("12:00:01"),
    )  # first load: the TTL window before the newest row
    assert materialize_incremental(store, at("12:00:00")) is None  # nothing new: nothing loaded
    # The 08:00 row of u2 is outside the first window; online has nothing for u2, offline does not either.
    compared, mismatches = online_offline_mismatches(store)
    assert (compared, mismatches) == (1, [])

    write_activity(features, [row("u1", "13:00:00", 7)], mode="append")
    assert materialize_incremental(store, at("13:00:00")) == (
        at("12:00:01"),
        at("13:00:01"),
    )  # from where the last load ended
    assert online_offline_mismatches(store) == (1, [])

    # Serving drifts from training: a value written to the online store behind Feast's back.
    store.write_to_online_store(
        "activity",
        pd.DataFrame(
            {"user_id": ["u1"], "value": [8], "ts": [at("13:00:00")], "created": [at("13:00:00")]}
        ),
    )
    compared, mismatches = online_offline_mismatches(store)
    assert compared == 1 and mismatches == ["activity ['u1']: value offline 7, online 8"]


def test_an_on_demand_view_is_computed_on_the_retrieved_rows(tmp_path, features):
    from feast.on_demand_feature_view import on_demand_feature_view

    activity = activity_view(features)

    @on_demand_feature_view(
        sources=[activity], schema=[Field(name="value_doubled", dtype=Int64)], mode="pandas"
    )
    def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"value_doubled": inputs["value"] * 2})

    store = store_for(tmp_path, [activity, doubled])
    result = retrieve(
        store,
        [("u1", at("12:30:00"), "a"), ("u2", at("09:00:00"), "b")],
        refs=("activity:value", "doubled:value_doubled"),
    )
    assert list(result.columns) == ["user_id", "event_timestamp", "label", "value", "value_doubled"]
    assert list(result["value_doubled"]) == [6, 40]


def test_a_rewritten_feature_table_reloads_the_ttl_window_into_the_online_store(tmp_path, features):
    """Late data rebuilds rows the online store already holds, with the same as-of times: an incremental
    load, which starts where the last one ended, would never look at them again."""
    from lakehouse.features.feature_store import materialize_incremental, online_offline_mismatches

    store = store_for(tmp_path, [activity_view(features)])
    assert materialize_incremental(store, at("12:00:00")) == (at("10:00:01"), at("12:00:01"))
    # The rebuild: u1's 12:00 row now says 5 (a late event counted), same event and created times.
    write_activity(
        features,
        [
            row("u1", "10:00:00", 1),
            row("u1", "12:00:00", 5, created="12:10:00"),
            row("u2", "08:00:00", 20),
        ],
    )
    assert materialize_incremental(store, at("12:00:00")) is None
    assert online_offline_mismatches(store) == (1, ["activity ['u1']: value offline 5, online 3"])
    assert materialize_incremental(store, at("12:00:00"), rewritten=True) == (
        at("10:00:01"),
        at("12:00:01"),
    )
    assert online_offline_mismatches(store) == (1, [])
    online = store.get_online_features(
        features=["activity:value"], entity_rows=[{"user_id": "u1"}]
    ).to_dict()
    assert online["value"] == [5]
