"""A batch that fails a batch-level check commits nothing and stops everything downstream."""

import warnings
from datetime import date, timedelta

from dagster import AssetKey, materialize, serialize_value

from assets.cleaned import cleaned_events
from assets.features import features_and_labels
from assets.raw import raw_events
from lakehouse.events.generator import GeneratorConfig, generate
from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.storage import DeltaStore
from resources.delta import DeltaStorage
from resources.engine import EngineResource
from resources.landing import LandingArea

warnings.simplefilter("ignore")
START = date(2026, 3, 1)
CLEAN = GeneratorConfig(
    users=600,
    seed=3,
    duplicate_rate=0,
    clock_skew_rate=0,
    late_rate=0,
    missing_field_rate=0,
    anonymous_rate=0,
    malformed_rate=0,
    bom_rate=0,
    drift_from=None,
)


def _run(
    tmp_path, first: date, last: date, assets=(raw_events, cleaned_events, features_and_labels)
):
    resources = {
        "delta": DeltaStorage(root=str(tmp_path / "delta")),
        "landing": LandingArea(path=str(tmp_path / "landing")),
        "engine": EngineResource(),
    }
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    return materialize(list(assets), resources=resources, tags=tags, raise_on_error=False)


def test_a_volume_drop_commits_nothing_and_nothing_downstream_runs(tmp_path):
    generate(tmp_path / "landing", START, 9, CLEAN)
    assert _run(tmp_path, START, START + timedelta(days=7)).success
    store = DeltaStore(str(tmp_path / "delta"))
    versions = {
        t: store.version(t) for t in ("cleaned_events", "quarantined_events", "user_features")
    }
    assert min(store.daily_rows("cleaned_events", "event_date").values()) > 500

    # The ninth day arrives with 90% of its lines missing.
    day9 = START + timedelta(days=8)
    landed = day_folder(tmp_path / "landing", day9) / "events.jsonl"
    lines = landed.read_text().splitlines(keepends=True)
    landed.write_text("".join(lines[: len(lines) // 10]))
    result = _run(tmp_path, day9, day9)

    assert not result.success
    volume = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "cleaned_events_volume"
    ]
    assert len(volume) == 1 and not volume[0].passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {AssetKey("raw_events")}  # raw keeps what landed; nothing after it
    assert {t: store.version(t) for t in versions} == versions
    assert day9 not in store.daily_rows("cleaned_events", "event_date")


def _content_hash(store: DeltaStore, table: str) -> str:
    import hashlib

    # batch_id names the run that published a row: a rerun is a new publication of the same content.
    frame = store.read_arrow(table).to_pandas().drop(columns=["batch_id"], errors="ignore")
    frame = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def test_three_reruns_of_a_range_leave_the_content_of_one_run(tmp_path):
    generate(
        tmp_path / "landing", START, 5, GeneratorConfig(users=200, seed=5)
    )  # every data problem on
    store = DeltaStore(str(tmp_path / "delta"))
    tables = ("raw_events", "cleaned_events", "quarantined_events")
    assert _run(
        tmp_path, START, START + timedelta(days=4), assets=(raw_events, cleaned_events)
    ).success
    after_one = {t: _content_hash(store, t) for t in tables}
    # Overlapping ranges, as backfills and the late-window automation produce them.
    for first, last in (
        (START, START + timedelta(days=4)),
        (START + timedelta(days=1), START + timedelta(days=3)),
        (START + timedelta(days=2), START + timedelta(days=4)),
    ):
        assert _run(tmp_path, first, last, assets=(raw_events, cleaned_events)).success
    assert {t: _content_hash(store, t) for t in tables} == after_one


def test_a_huge_line_does_not_bloat_the_metadata_of_any_materialization(tmp_path):
    generate(tmp_path / "landing", START, 1, CLEAN)
    landed = day_folder(tmp_path / "landing", START) / "events.jsonl"
    lines = landed.read_text().splitlines(keepends=True)
    huge = lines[0].replace('"session_id":"', '"session_id":"' + "x" * 5_000_000, 1)
    assert len(huge) > 5_000_000
    landed.write_text(huge + "".join(lines[1:]))  # first line: every preview shows it
    result = _run(tmp_path, START, START, assets=(raw_events, cleaned_events))
    assert result.success
    materialized = {
        e.asset_key: e.materialization for e in result.get_asset_materialization_events()
    }
    assert {AssetKey("raw_events"), AssetKey("cleaned_events")} <= set(materialized)
    sizes = {key.to_user_string(): len(serialize_value(m)) for key, m in materialized.items()}
    sizes |= {e.check_name: len(serialize_value(e)) for e in result.get_asset_check_evaluations()}
    assert max(sizes.values()) < 100_000, sizes


def test_what_ingestion_does_not_read_is_reported_by_a_warning(tmp_path):
    generate(tmp_path / "landing", START, 1, CLEAN)
    folder = day_folder(tmp_path / "landing", START)
    (folder / "events.jsonl").rename(folder / "events.json")  # misnamed: not ingested
    (tmp_path / "landing" / "date=2026-3-2").mkdir()  # not an ISO date
    result = _run(tmp_path, START, START, assets=(raw_events,))
    assert result.success  # a warning: the lines that were readable are committed
    (check,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "raw_events_unread_landing"
    ]
    assert not check.passed and check.severity.value == "WARN"
    assert sorted(check.metadata["unread"].data) == ["date=2026-03-01/events.json", "date=2026-3-2"]


def test_each_partition_reports_its_own_rows_and_the_run_totals_appear_once(tmp_path):
    generate(tmp_path / "landing", START, 3, CLEAN)
    result = _run(tmp_path, START, START + timedelta(days=2), assets=(raw_events, cleaned_events))
    assert result.success
    by_asset: dict[str, dict[str, dict]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        by_asset.setdefault(m.asset_key.to_user_string(), {})[m.partition] = {
            k: v.value for k, v in m.metadata.items()
        }
    days = [(START + timedelta(days=i)).isoformat() for i in range(3)]
    # Counted here from the landed files: lines per ingest day.
    landed = {
        day: len(
            (day_folder(tmp_path / "landing", date.fromisoformat(day)) / "events.jsonl")
            .read_bytes()
            .splitlines()
        )
        for day in days
    }
    assert {day: by_asset["raw_events"][day]["rows_written"] for day in days} == landed
    cleaned_rows = DeltaStore(str(tmp_path / "delta")).daily_rows("cleaned_events", "event_date")
    assert {day: by_asset["cleaned_events"][day]["rows_written"] for day in days} == {
        day: cleaned_rows[date.fromisoformat(day)] for day in days
    }
    assert [day for day in days if "run_rows_written" in by_asset["cleaned_events"][day]] == [
        days[-1]
    ]
    assert by_asset["raw_events"][days[-1]]["run_rows_written"] == sum(landed.values())
    assert (
        "raw_rows_attributed" in by_asset["cleaned_events"][days[-1]]["raw_rows_read_vs_attributed"]
    )
