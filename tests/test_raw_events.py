"""raw_events as an asset: the landing contract across runs, links in its previews, two runs of one date, old lakes."""

import warnings
from datetime import date

from dagster import materialize, serialize_value

import assets.raw
from assets.raw import raw_events
from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.ingest import landed_lines
from lakehouse.tables.schemas import RAW_EVENTS
from lakehouse.tables.storage import DateRange, DeltaStore
from resources.delta import DeltaStorage
from resources.landing import LandingArea

warnings.simplefilter("ignore")
DAY = date(2026, 3, 1)
ONE_DAY = DateRange("ingest_date", DAY, DAY)


def _run(tmp_path, raise_on_error=True):
    resources = {
        "delta": DeltaStorage(root=str(tmp_path / "delta")),
        "landing": LandingArea(path=str(tmp_path / "landing")),
    }
    return materialize(
        [raw_events],
        resources=resources,
        partition_key=DAY.isoformat(),
        raise_on_error=raise_on_error,
    )


def _check(result, name: str):
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return check


def _raw(tmp_path) -> list[tuple]:
    rows = DeltaStore(str(tmp_path / "delta")).read_arrow(RAW_EVENTS.name).to_pylist()
    return sorted((r["source_file"], r["line_number"], r["raw_line"]) for r in rows)


def _landing(tmp_path, files: dict[str, bytes]):
    folder = day_folder(tmp_path / "landing", DAY)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_a_rerun_adds_appended_lines_and_keeps_lines_that_vanished_or_changed(tmp_path):
    folder = _landing(tmp_path, {"a.jsonl": b"a1\na2\na3\n", "b.jsonl": b"b1\nb2\n"})
    assert _check(_run(tmp_path), "raw_events_landing_rewritten").passed
    # a.jsonl is cut short and rewritten, b.jsonl grows: what the landing sensor starts a run on.
    (folder / "a.jsonl").write_bytes(b"A1\n")
    with (folder / "b.jsonl").open("ab") as appending:
        appending.write(b"b3\n")
    result = _run(tmp_path)
    expected = [
        ("date=2026-03-01/a.jsonl", 1, "a1"),
        ("date=2026-03-01/a.jsonl", 2, "a2"),
        ("date=2026-03-01/a.jsonl", 3, "a3"),
        ("date=2026-03-01/b.jsonl", 1, "b1"),
        ("date=2026-03-01/b.jsonl", 2, "b2"),
        ("date=2026-03-01/b.jsonl", 3, "b3"),
    ]
    assert _raw(tmp_path) == expected
    rewritten = _check(result, "raw_events_landing_rewritten")
    assert not rewritten.passed and rewritten.severity.value == "WARN"
    assert rewritten.metadata["files"].data == {
        "date=2026-03-01/a.jsonl": "lines 2-3 gone, line 1 changed: raw_events keeps the lines as ingested"
    }
    (materialization,) = [e.materialization for e in result.get_asset_materialization_events()]
    assert (
        materialization.metadata["rows_written"].value,
        materialization.metadata["rows_appended"].value,
    ) == (6, 1)
    _run(tmp_path)
    assert _raw(tmp_path) == expected  # a rerun with nothing new changes nothing


def test_a_linked_file_reaches_neither_raw_nor_any_metadata(tmp_path):
    (tmp_path / "secret").write_text('{"password": "hunter2"}\n')
    folder = _landing(tmp_path, {"a.jsonl": b"landed\n"})
    (folder / "events.jsonl").symlink_to(tmp_path / "secret")
    result = _run(tmp_path)
    assert _raw(tmp_path) == [("date=2026-03-01/a.jsonl", 1, "landed")]
    assert _check(result, "raw_events_unread_landing").metadata["unread"].data == {
        "date=2026-03-01/events.jsonl": "a symbolic link: links are not followed"
    }
    events = [*result.get_asset_materialization_events(), *result.get_asset_check_evaluations()]
    assert not [event for event in events if "hunter2" in serialize_value(event)]


def test_a_run_computed_before_another_run_committed_the_date_computes_again_from_it(
    tmp_path, monkeypatch
):
    folder = _landing(tmp_path, {"a.jsonl": b"a1\n"})
    _run(tmp_path)
    store = DeltaStore(str(tmp_path / "delta"))
    computed = assets.raw.raw_partitions
    calls = []

    def another_run_commits_meanwhile(*args):
        partitions = computed(*args)  # the first time, from the landing as it was: a1
        calls.append(args)
        if len(calls) == 1:
            with (folder / "a.jsonl").open("ab") as appending:
                appending.write(b"a2\n")
            store.write_arrow(
                RAW_EVENTS,
                landed_lines(tmp_path / "landing", DAY),
                ONE_DAY,
                {RAW_EVENTS.name: store.version(RAW_EVENTS.name)},
            )
        return partitions

    monkeypatch.setattr(assets.raw, "raw_partitions", another_run_commits_meanwhile)
    versions = store.version(RAW_EVENTS.name)
    result = _run(tmp_path)
    assert len(calls) == 2  # its first commit was refused: the date had changed after it was read
    assert store.version(RAW_EVENTS.name) == versions + 2  # the other run's commit, then this one's
    assert _raw(tmp_path) == [
        ("date=2026-03-01/a.jsonl", 1, "a1"),
        ("date=2026-03-01/a.jsonl", 2, "a2"),
    ]
    assert _check(result, "raw_events_landing_rewritten").passed


def test_a_raw_table_from_the_previous_version_keeps_working(tmp_path):
    # The previous version replaced each ingest date with the lines its folder held, and recorded no input.
    folder = _landing(tmp_path, {"a.jsonl": b"a1\na2\n"})
    store = DeltaStore(str(tmp_path / "delta"))
    store.write_arrow(RAW_EVENTS, landed_lines(tmp_path / "landing", DAY), ONE_DAY)
    with (folder / "a.jsonl").open("ab") as appending:
        appending.write(b"a3\n")
    result = _run(tmp_path)
    assert _check(result, "raw_events_landing_rewritten").passed
    assert _raw(tmp_path) == [("date=2026-03-01/a.jsonl", n, f"a{n}") for n in (1, 2, 3)]
