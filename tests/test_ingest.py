import gzip
from datetime import date

import pytest

from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.ingest import (
    appended_rows,
    landed_days,
    landed_lines,
    raw_partitions,
    unreadable_entries,
)

DAY = date(2026, 3, 1)


def test_every_line_is_kept_verbatim_with_its_position(tmp_path):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"event_id":"e1"}\n\nnot json\n{"event_id":"e1"}\n')
    (folder / "b.jsonl").write_text("last line without newline")
    table = landed_lines(tmp_path, DAY).to_pylist()
    assert [(r["source_file"], r["line_number"], r["raw_line"]) for r in table] == [
        ("date=2026-03-01/a.jsonl", 1, '{"event_id":"e1"}'),
        ("date=2026-03-01/a.jsonl", 2, ""),
        ("date=2026-03-01/a.jsonl", 3, "not json"),
        ("date=2026-03-01/a.jsonl", 4, '{"event_id":"e1"}'),
        ("date=2026-03-01/b.jsonl", 1, "last line without newline"),
    ]
    assert {r["ingest_date"] for r in table} == {DAY}


def test_a_day_that_never_landed_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing landed for 2026-03-01"):
        landed_lines(tmp_path, DAY)


def _landed_bytes(rows) -> list[bytes]:
    """What landed, rebuilt from raw_events rows alone."""
    return [
        r["raw_bytes"] if r["raw_bytes"] is not None else r["raw_line"].encode("utf-8")
        for r in rows
    ]


def test_lines_that_are_not_utf8_keep_their_exact_bytes(tmp_path):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    landed = [
        b'{"event_id":"e\xff"}',
        b'{"event_id":"e\xfe"}',
        '{"event_id":"é"}'.encode(),
        b"\xef\xbb\xbf{}\r",
        b"\x00\x01",
    ]
    (folder / "a.jsonl").write_bytes(b"\n".join(landed) + b"\n")
    rows = landed_lines(tmp_path, DAY).to_pylist()
    assert _landed_bytes(rows) == landed
    # Only the two invalid lines carry bytes; their texts show the replacement character.
    assert [r["raw_bytes"] is not None for r in rows] == [True, True, False, False, False]
    assert rows[0]["raw_line"] == rows[1]["raw_line"] == '{"event_id":"e\ufffd"}'


def test_compressed_files_are_read_and_everything_else_is_reported(tmp_path):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(b"one\n")
    (folder / "b.jsonl.gz").write_bytes(gzip.compress(b"two\nthree"))
    (folder / "c.jsonl.gz").write_bytes(gzip.compress(b"four\n")[:-6])  # cut short in transfer
    (folder / "d.json").write_bytes(b"five\n")
    (folder / "nested").mkdir()
    (tmp_path / "date=2026-02-30").mkdir()
    (tmp_path / "incoming").mkdir()
    (tmp_path / "README.txt").write_text("hello")  # not data: not reported
    (tmp_path / "stray.jsonl").write_bytes(b"six\n")
    rows = landed_lines(tmp_path, DAY).to_pylist()
    assert [(r["source_file"], r["line_number"], r["raw_line"]) for r in rows] == [
        ("date=2026-03-01/a.jsonl", 1, "one"),
        ("date=2026-03-01/b.jsonl.gz", 1, "two"),
        ("date=2026-03-01/b.jsonl.gz", 2, "three"),
    ]
    assert sorted(unreadable_entries(tmp_path, [DAY])) == [
        "date=2026-02-30",
        "date=2026-03-01/c.jsonl.gz",
        "date=2026-03-01/d.json",
        "date=2026-03-01/nested",
        "incoming",
        "stray.jsonl",
    ]
    assert sorted(landed_days(tmp_path)) == [DAY]


def test_links_are_never_followed_and_are_reported(tmp_path):
    landing, outside = tmp_path / "landing", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("password=hunter2\n")
    (outside / "a.jsonl").write_text("from a linked folder\n")
    folder = day_folder(landing, DAY)
    folder.mkdir(parents=True)
    (folder / "b.jsonl").write_text("landed\n")
    (folder / "events.jsonl").symlink_to(outside / "secret")
    (folder / "dangling.jsonl").symlink_to(outside / "missing")
    (folder / "nested").symlink_to(outside)
    linked_day = DAY.replace(day=2)
    day_folder(landing, linked_day).symlink_to(outside)
    (landing / "stray.jsonl").symlink_to(outside / "secret")
    assert [r["raw_line"] for r in landed_lines(landing, DAY).to_pylist()] == ["landed"]
    assert landed_lines(landing, linked_day).num_rows == 0  # there, but not read
    link = "a symbolic link: links are not followed"
    assert unreadable_entries(landing, [DAY, linked_day]) == {
        "date=2026-03-01/dangling.jsonl": link,
        "date=2026-03-01/events.jsonl": link,
        "date=2026-03-01/nested": link,
        "date=2026-03-02": link,
        "stray.jsonl": link,
    }
    assert list(landed_days(landing)) == [DAY] and landed_days(landing)[DAY].startswith("b.jsonl:")


def test_a_file_swapped_for_a_link_after_it_was_listed_is_not_read(tmp_path, monkeypatch):
    import lakehouse.tables.ingest as ingest

    (tmp_path / "secret").write_text("password=hunter2\n")
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    (folder / "events.jsonl").symlink_to(tmp_path / "secret")
    monkeypatch.setattr(
        ingest, "_is_landed_file", lambda path: path.name.endswith(".jsonl")
    )  # as listed before the swap
    assert landed_lines(tmp_path, DAY).num_rows == 0


def _rows(day: date, file: str, lines: list[str | bytes]) -> list[dict]:
    return [
        {
            "ingest_date": day,
            "source_file": f"date={day.isoformat()}/{file}",
            "line_number": n,
            "raw_line": line if isinstance(line, str) else line.decode("utf-8", "replace"),
            "raw_bytes": None if isinstance(line, str) else line,
        }
        for n, line in enumerate(lines, start=1)
    ]


def test_raw_keeps_every_ingested_line_and_adds_the_appended_ones(tmp_path):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    files = {
        "grows.jsonl": b"g1\ng2\n",
        "shrinks.jsonl": b"s1\ns2\ns3\ns4\n",
        "rewritten.jsonl": b"r1\nr2\xff\nr3\n",
        "deleted.jsonl": b"d1\n",
        "same.jsonl": b"x1\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    ingested = landed_lines(tmp_path, DAY)
    # After ingestion: one file grows (as the contract allows), the others break it in every way.
    (folder / "grows.jsonl").write_bytes(b"g1\ng2\ng3\ng4")
    (folder / "shrinks.jsonl").write_bytes(b"s1\n")
    (folder / "rewritten.jsonl").write_bytes(b"r1\nR2\nr3\nr4\n")
    (folder / "deleted.jsonl").unlink()
    (folder / "new.jsonl").write_bytes(b"n1\n")
    rows, broken = appended_rows(ingested, landed_lines(tmp_path, DAY))
    expected = (
        _rows(DAY, "deleted.jsonl", ["d1"])
        + _rows(DAY, "grows.jsonl", ["g1", "g2", "g3", "g4"])
        + _rows(DAY, "new.jsonl", ["n1"])
        + _rows(DAY, "rewritten.jsonl", ["r1", b"r2\xff", "r3", "r4"])
        + _rows(DAY, "same.jsonl", ["x1"])
        + _rows(DAY, "shrinks.jsonl", ["s1", "s2", "s3", "s4"])
    )
    assert rows.to_pylist() == expected
    kept = ": raw_events keeps the lines as ingested"
    assert broken == {
        "date=2026-03-01/deleted.jsonl": "gone or empty (1 ingested line)" + kept,
        "date=2026-03-01/rewritten.jsonl": "line 2 changed" + kept,
        "date=2026-03-01/shrinks.jsonl": "lines 2-4 gone" + kept,
    }
    # Once more, with nothing new: the same rows, the same report.
    again, broken_again = appended_rows(rows, landed_lines(tmp_path, DAY))
    assert again.to_pylist() == expected and broken_again == broken


def test_a_day_folder_that_is_gone_keeps_its_ingested_rows(tmp_path):
    import shutil

    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(b"one\ntwo\n")
    ingested = landed_lines(tmp_path, DAY)
    shutil.rmtree(folder)
    partitions, broken = raw_partitions(tmp_path, [DAY], ingested)
    assert partitions[DAY].to_pylist() == ingested.to_pylist()
    assert list(broken) == ["date=2026-03-01/a.jsonl"]
    with pytest.raises(FileNotFoundError, match="nothing landed for 2026-03-01"):
        raw_partitions(tmp_path, [DAY], ingested.slice(0, 0))
