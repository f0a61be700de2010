import gzip
from datetime import date

import pytest

from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.ingest import landed_days, landed_lines, unreadable_entries

DAY = date(2026, 3, 1)


def test_every_line_is_kept_verbatim_with_its_position(tmp_path):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"event_id":"e1"}\n\nnot json\n{"event_id":"e1"}\n')
    (folder / "b.jsonl").write_text('last line without newline')
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
    return [r["raw_bytes"] if r["raw_bytes"] is not None else r["raw_line"].encode("utf-8") for r in rows]


def test_lines_that_are_not_utf8_keep_their_exact_bytes(tmp_path):
    folder = day_folder(tmp_path, DAY)
    folder.mkdir(parents=True)
    landed = [b'{"event_id":"e\xff"}', b'{"event_id":"e\xfe"}', '{"event_id":"é"}'.encode(), b"\xef\xbb\xbf{}\r", b"\x00\x01"]
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
