"""Landed JSONL files -> raw_events rows. Every line is kept exactly as it landed.

A landing day folder holds `.jsonl` files, or `.jsonl.gz` files that are read the same way once
decompressed. Everything else in the landing area (a folder that is not `date=YYYY-MM-DD`, a file
of another kind, a compressed file that cannot be decompressed) is not ingested and is reported by
`unreadable_entries`, never skipped in silence.
"""

from __future__ import annotations

import gzip
import zlib
from datetime import date
from pathlib import Path

import pyarrow as pa

from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.schemas import RAW_EVENTS

LANDED_SUFFIXES = (".jsonl", ".jsonl.gz")


def day_of_folder(folder: Path) -> date | None:
    """The day a landing folder named date=YYYY-MM-DD holds; None for any other name."""
    try:
        return date.fromisoformat(folder.name.removeprefix("date=")) if folder.name.startswith("date=") else None
    except ValueError:
        return None


def _is_landed_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(LANDED_SUFFIXES)


def landed_days(landing: Path) -> dict[date, str]:
    """Each landed day folder with a signature of its files (names, sizes, modification times)."""
    days = {}
    for folder in sorted(landing.glob("date=*")):
        if (day := day_of_folder(folder)) is not None:
            files = sorted(f for f in folder.iterdir() if _is_landed_file(f))
            days[day] = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return days


def unreadable_entries(landing: Path, days: list[date]) -> dict[str, str]:
    """What the landing area holds that is not ingested, relative path -> why.

    Looks at the top level of the landing area (folders, and landed files outside a day folder;
    other files there, such as a generator's manifest, are not data) and inside the folders of `days`.
    """
    entries = {}
    for entry in sorted(landing.iterdir()) if landing.is_dir() else []:
        if entry.is_dir() and day_of_folder(entry) is None:
            entries[entry.name] = "not a day folder (date=YYYY-MM-DD)"
        elif _is_landed_file(entry):
            entries[entry.name] = "a landed file outside a day folder"
    for day in days:
        folder = day_folder(landing, day)
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            rel = str(entry.relative_to(landing))
            if not _is_landed_file(entry):
                entries[rel] = f"not a landed file ({' or '.join(LANDED_SUFFIXES)})"
            elif entry.name.endswith(".gz") and _file_bytes(entry) is None:
                entries[rel] = "not a readable gzip file"
    return entries


def _file_bytes(path: Path) -> bytes | None:
    """The file's content, decompressed for .gz; None for a .gz that does not decompress whole."""
    data = path.read_bytes()
    if not path.name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return None


def _decoded(line: bytes) -> tuple[str, bytes | None]:
    """The line as text, and its bytes when the text is not exactly them (invalid UTF-8)."""
    try:
        return line.decode("utf-8"), None
    except UnicodeDecodeError:
        return line.decode("utf-8", errors="replace"), line


def landed_lines(landing: Path, day: date) -> pa.Table:
    """All lines of one landing day folder, with their file and line number, as raw_events rows.

    Lines end at "\\n" only: a "\\r" before it stays part of the line. A line that is not valid
    UTF-8 keeps its bytes in raw_bytes and its text with U+FFFD for each invalid sequence.
    """
    folder = day_folder(landing, day)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing landed for {day.isoformat()}: {folder} does not exist")
    files, numbers, lines, undecodable = [], [], [], []
    for path in sorted(f for f in folder.iterdir() if _is_landed_file(f)):
        data = _file_bytes(path)
        if data is None:
            continue  # reported by unreadable_entries
        file_lines = data.split(b"\n")
        if file_lines[-1] == b"":
            file_lines.pop()  # the newline that ends the last line does not start a new one
        try:
            decoded = [(text, None) for text in data.decode("utf-8").split("\n")[: len(file_lines)]]
        except UnicodeDecodeError:
            decoded = [_decoded(line) for line in file_lines]
        rel = str(path.relative_to(landing))
        files.extend([rel] * len(file_lines))
        numbers.extend(range(1, len(file_lines) + 1))
        lines.extend(text for text, _ in decoded)
        undecodable.extend(raw for _, raw in decoded)
    return pa.table(
        {
            "ingest_date": pa.array([day] * len(lines), pa.date32()),
            "source_file": pa.array(files, pa.string()),
            "line_number": pa.array(numbers, pa.int64()),
            "raw_line": pa.array(lines, pa.string()),
            "raw_bytes": pa.array(undecodable, pa.binary()),
        },
        schema=RAW_EVENTS.arrow(),
    )
