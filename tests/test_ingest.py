from datetime import date

import pytest

from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.ingest import landed_lines

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
