"""Runs that overlap in time, step by step, through the real assets: the newest input version always
wins, features and labels share one cleaned_events version, and late lines are never left in no table
without a check saying so."""

import json
import shutil
import warnings
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetKey, materialize

import assets.cleaned as cleaned_module
import assets.features as features_module
from assets.cleaned import cleaned_events
from assets.features import features_and_labels
from assets.raw import raw_events
from lakehouse.engines import engine_named
from lakehouse.events.generator import GeneratorConfig, generate
from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.publication import new_batch_id, publish_pair, published_quarantine
from lakehouse.tables.schemas import CLEANED_EVENTS, RAW_EVENTS
from lakehouse.tables.storage import DateRange, DeltaStore
from resources.delta import DeltaStorage
from resources.engine import EngineResource
from resources.landing import LandingArea

warnings.simplefilter("ignore")
START = date(2026, 3, 1)
D1, D2, D3 = START, START + timedelta(days=1), START + timedelta(days=2)
QUIET = GeneratorConfig(
    users=40,
    seed=11,
    duplicate_rate=0,
    clock_skew_rate=0,
    late_rate=0,
    missing_field_rate=0,
    anonymous_rate=0,
    malformed_rate=0,
    bom_rate=0,
    drift_from=None,
)


def _run(tmp_path, first, last, assets):
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


def _line(
    event_id: str, when: datetime, received: datetime, name="session_started", **properties
) -> str:
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    return json.dumps(
        {
            "event_id": event_id,
            "event_name": name,
            "timestamp": stamp(when),
            "sent_at": stamp(received),
            "received_at": stamp(received),
            "user_id": "u_late",
            "session_id": "s_late",
            "platform": "web",
            "properties": properties,
        }
    )


def _append_lines(landing, day, lines):
    with open(day_folder(landing, day) / "events.jsonl", "a") as f:
        f.write("".join(line + "\n" for line in lines))


def _utc(day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def test_a_run_whose_commit_finds_a_newer_computation_computes_again_from_the_newest_raw(
    tmp_path, monkeypatch
):
    """Run A computes D1..D2 from raw v_old; meanwhile run B publishes D2..D3 from a newer raw version.
    A's commit must not replace B's rows for D2 with older ones: A computes again, from the newest raw."""
    generate(tmp_path / "landing", START, 3, QUIET)
    assert _run(tmp_path, D1, D3, [raw_events, cleaned_events]).success
    store = DeltaStore(str(tmp_path / "delta"))
    newer_line = _line("late-but-newer", _utc(D2, 12), _utc(D2, 12, 1))
    real_clean_events = cleaned_module.clean_events
    calls = []

    def run_b_publishes_meanwhile(raw, start, end, *args):
        calls.append((start, end))
        if len(calls) == 1:
            # B: a new line reaches raw D2, and B publishes D2..D3 from that raw version.
            old_rows = store.read_arrow("raw_events")
            day2 = old_rows.filter(pc.equal(old_rows["ingest_date"], pa.scalar(D2)))
            added = pa.table(
                {
                    "ingest_date": [D2],
                    "source_file": ["date=2026-03-02/events.jsonl"],
                    "line_number": [day2.num_rows + 1],
                    "raw_line": [newer_line],
                    "raw_bytes": pa.nulls(1, pa.binary()),
                },
                schema=RAW_EVENTS.arrow(),
            )
            raw_version = store.write_arrow(
                RAW_EVENTS, pa.concat_tables([day2, added]), DateRange("ingest_date", D2, D2)
            )
            engine = engine_named("duckdb")
            with engine.persisting() as persist:
                result = real_clean_events(
                    engine.read(store, "raw_events", raw_version), D2, D3, persist, "b"
                )
                publish_pair(
                    store,
                    engine.batch(result.cleaned),
                    engine.batch(result.quarantined),
                    DateRange("event_date", D2, D3),
                    {"raw_events": raw_version},
                    new_batch_id(),
                )
        return real_clean_events(raw, start, end, *args)

    monkeypatch.setattr(cleaned_module, "clean_events", run_b_publishes_meanwhile)
    result = _run(tmp_path, D1, D2, [cleaned_events])
    assert result.success
    assert calls == [(D1, D2), (D1, D2)]  # A computed twice: its first commit was refused
    ids = store.read_arrow("cleaned_events", columns=["event_id"]).column("event_id").to_pylist()
    assert "late-but-newer" in ids and len(ids) == len(set(ids))
    (materialization,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == AssetKey("cleaned_events")
        and e.materialization.partition == D2.isoformat()
    ]
    assert materialization.metadata["input_versions"].value == {
        "raw_events": store.version("raw_events")
    }


def test_features_and_labels_come_from_one_cleaned_events_version_while_it_keeps_moving(
    tmp_path, monkeypatch
):
    generate(tmp_path / "landing", START, 9, QUIET)
    assert _run(tmp_path, START, START + timedelta(days=8), [raw_events, cleaned_events]).success
    store = DeltaStore(str(tmp_path / "delta"))
    real = features_module.TABLES["user_features"]
    bumps = []

    def the_sensor_commits_meanwhile(cleaned, last_day):
        # The late-data sensor's run republishes an event date while the feature tables are computed.
        rows = store.read_arrow("cleaned_events")
        bumps.append(
            store.write_arrow(
                CLEANED_EVENTS,
                rows.filter(pc.equal(rows["event_date"], pa.scalar(D1))),
                DateRange("event_date", D1, D1),
            )
        )
        return real[3](cleaned, last_day)

    monkeypatch.setitem(
        features_module.TABLES, "user_features", (*real[:3], the_sensor_commits_meanwhile)
    )
    assert _run(tmp_path, START, START, [features_and_labels]).success
    recorded = {
        table: store.commit_inputs(table, store.version(table))
        for table in ("user_features", "category_features", "training_labels")
    }
    assert bumps and len({json.dumps(inputs) for inputs in recorded.values()}) == 1, recorded
    assert recorded["user_features"]["cleaned_events"] < store.version("cleaned_events")


def test_a_retry_is_one_event_whether_its_dates_are_built_one_at_a_time_or_together(tmp_path):
    """The first delivery lands on P-1 with an event time just before midnight; its retry lands on P
    with its own receive time, which corrects its event time past midnight."""
    landing = tmp_path / "landing"
    generate(landing, START, 3, QUIET)
    first = _line("retried", _utc(D1, 23, 59), _utc(D1, 23, 59))
    # The retry: stamped again by its SDK at 00:01 and received at 00:02, so its corrected time is past midnight.
    retry = _line("retried", _utc(D2, 0, 1), _utc(D2, 0, 2))
    _append_lines(landing, D1, [first])
    _append_lines(landing, D2, [retry])

    def built(folder, ranges):
        for first_day, last_day in ranges:
            assert _run(folder, first_day, last_day, [raw_events, cleaned_events]).success
        store = DeltaStore(str(folder / "delta"))
        cleaned = sorted(
            (r["event_id"], str(r["event_date"]), r["line_number"])
            for r in store.read_arrow(
                "cleaned_events", columns=["event_id", "event_date", "line_number"]
            ).to_pylist()
        )
        quarantined = sorted(
            (str(r["event_date"]), r["source_file"], r["line_number"], r["reason"])
            for r in published_quarantine(
                store, D1, D3, columns=["event_date", "source_file", "line_number", "reason"]
            ).to_pylist()
        )
        return cleaned, quarantined

    separately, together = tmp_path / "separately", tmp_path / "together"
    for folder in (separately, together):
        shutil.copytree(landing, folder / "landing")
    one_at_a_time = built(separately, [(D1, D1), (D2, D2), (D3, D3)])
    all_at_once = built(together, [(D1, D3)])
    assert one_at_a_time == all_at_once
    ids = [event_id for event_id, _, _ in one_at_a_time[0]]
    assert len(ids) == len(set(ids)) and ids.count("retried") == 1
    assert ("retried", D1.isoformat()) in {
        (event_id, day) for event_id, day, _ in one_at_a_time[0]
    }  # the first delivery is the event
    assert [q for q in one_at_a_time[1] if q[3] == "duplicate"] == [
        (
            D2.isoformat(),
            "date=2026-03-02/events.jsonl",
            len((day_folder(landing, D2) / "events.jsonl").read_text().splitlines()),
            "duplicate",
        )
    ]


def test_late_lines_of_a_date_outside_the_run_are_named_and_the_named_command_publishes_them(
    tmp_path,
):
    landing = tmp_path / "landing"
    generate(landing, START, 3, QUIET)
    assert _run(tmp_path, D1, D3, [raw_events, cleaned_events]).success
    # A late purchase of D2 lands in D3's folder, and only partition D3 is run, as a CLI user would.
    _append_lines(
        landing,
        D3,
        [
            _line(
                "late-purchase",
                _utc(D2, 18),
                _utc(D3, 9),
                name="purchase_completed",
                order_id="o-late",
                revenue_usd=42.5,
            )
        ],
    )
    result = _run(tmp_path, D3, D3, [raw_events, cleaned_events])
    assert result.success
    (check,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "cleaned_events_unpublished_lines"
    ]
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["lines_by_event_date"].value == {D2.isoformat(): 1}
    command = check.metadata["publish_them_with"].value
    assert (
        command.endswith(f"--partition-range {D2}...{D2}")
        and "--select 'cleaned_events*,quarantined_events'" in command
    )
    store = DeltaStore(str(tmp_path / "delta"))
    assert (
        "late-purchase"
        not in store.read_arrow("cleaned_events", columns=["event_id"])
        .column("event_id")
        .to_pylist()
    )

    # What the command does: rebuild D2 (and what is downstream of it).
    again = _run(tmp_path, D2, D2, [cleaned_events])
    assert again.success
    (check,) = [
        e
        for e in again.get_asset_check_evaluations()
        if e.check_name == "cleaned_events_unpublished_lines"
    ]
    assert check.passed
    rows = store.read_arrow("cleaned_events").to_pylist()
    assert [
        (str(r["event_date"]), r["revenue_usd"]) for r in rows if r["event_id"] == "late-purchase"
    ] == [(D2.isoformat(), 42.5)]
