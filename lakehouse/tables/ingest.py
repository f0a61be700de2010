"""Landed JSONL files -> raw_events rows. Every line is kept exactly as it landed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa

from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.schemas import RAW_EVENTS


def landed_days(landing: Path) -> dict[date, str]:
    """Each landed day folder with a signature of its files (names, sizes, modification times)."""
    days = {}
    for folder in sorted(landing.glob("date=*")):
        try:
            day = date.fromisoformat(folder.name.removeprefix("date="))
        except ValueError:
            continue
        files = sorted(folder.glob("*.jsonl"))
        days[day] = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return days


def landed_lines(landing: Path, day: date) -> pa.Table:
    """All lines of one landing day folder, with their file and line number, as raw_events rows."""
    folder = day_folder(landing, day)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing landed for {day.isoformat()}: {folder} does not exist")
    files, numbers, lines = [], [], []
    for path in sorted(folder.glob("*.jsonl")):
        text = path.read_bytes().decode("utf-8", errors="replace")
        file_lines = text.split("\n")
        if file_lines and file_lines[-1] == "":
            file_lines.pop()  # the newline that ends the last line does not start a new one
        rel = str(path.relative_to(landing))
        files.extend([rel] * len(file_lines))
        numbers.extend(range(1, len(file_lines) + 1))
        lines.extend(file_lines)
    return pa.table(
        {
            "ingest_date": pa.array([day] * len(lines), pa.date32()),
            "source_file": pa.array(files, pa.string()),
            "line_number": pa.array(numbers, pa.int64()),
            "raw_line": pa.array(lines, pa.string()),
        },
        schema=RAW_EVENTS.arrow(),
    )
