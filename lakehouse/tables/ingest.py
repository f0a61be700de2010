"""Landed JSONL files -> raw_events rows. Every line is kept exactly as it landed.

A landing day folder holds `.jsonl` files, or `.jsonl.gz` files that are read the same way once
decompressed. Everything else in the landing area (a folder that is not `date=YYYY-MM-DD`, a file
of another kind, a compressed file that cannot be decompressed, a symbolic link) is not ingested and
is reported by `unreadable_entries`, never skipped in silence. Links are never followed, whatever
they point to: a link named events.jsonl would otherwise copy any file the service can read into
raw_events and its previews.

The landing contract: a landed file may only grow, by appending whole lines (each with its newline)
after it lands. `appended_rows` holds raw_events to it: the rows already ingested are kept as they
are, lines appended since are added, and a file that broke the contract (shrank, vanished, or
changed under ingested lines) is reported.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.events.vocabulary import day_folder
from lakehouse.tables.schemas import RAW_EVENTS
from lakehouse.tables.storage import DeltaStore

LANDED_SUFFIXES = (".jsonl", ".jsonl.gz")
LINK = "a symbolic link: links are not followed"


def day_of_folder(folder: Path) -> date | None:
    """The day a landing folder named date=YYYY-MM-DD holds; None for any other name."""
    try:
        return (
            date.fromisoformat(folder.name.removeprefix("date="))
            if folder.name.startswith("date=")
            else None
        )
    except ValueError:
        return None


def _is_landed_file(path: Path) -> bool:
    # A link is no landed file, whatever it points to.
    return path.name.endswith(LANDED_SUFFIXES) and not path.is_symlink() and path.is_file()


def _is_day_folder(folder: Path) -> bool:
    return day_of_folder(folder) is not None and not folder.is_symlink() and folder.is_dir()


def landed_days(landing: Path) -> dict[date, str]:
    """Each landed day folder with a signature of its files (names, sizes, modification times)."""
    days: dict[date, str] = {}
    for folder in sorted(landing.glob("date=*")):
        if _is_day_folder(folder) and (day := day_of_folder(folder)) is not None:
            files = sorted(f for f in folder.iterdir() if _is_landed_file(f))
            days[day] = ";".join(
                f"{f.name}:{f.lstat().st_size}:{f.lstat().st_mtime_ns}" for f in files
            )
    return days


def unreadable_entries(landing: Path, days: list[date]) -> dict[str, str]:
    """What the landing area holds that is not ingested, relative path -> why.

    Looks at the top level of the landing area (folders, and landed files outside a day folder;
    other files there, such as a generator's manifest, are not data) and inside the folders of `days`.
    """
    entries = {}
    for entry in sorted(landing.iterdir()) if landing.is_dir() else []:
        if entry.is_symlink():
            entries[entry.name] = LINK
        elif entry.is_dir() and day_of_folder(entry) is None:
            entries[entry.name] = "not a day folder (date=YYYY-MM-DD)"
        elif _is_landed_file(entry):
            entries[entry.name] = "a landed file outside a day folder"
    for day in days:
        folder = day_folder(landing, day)
        for entry in sorted(folder.iterdir()) if _is_day_folder(folder) else []:
            rel = str(entry.relative_to(landing))
            if entry.is_symlink():
                entries[rel] = LINK
            elif not _is_landed_file(entry):
                entries[rel] = f"not a landed file ({' or '.join(LANDED_SUFFIXES)})"
            elif entry.name.endswith(".gz") and _file_bytes(folder, entry.name) is None:
                entries[rel] = "not a readable gzip file"
    return entries


def _file_bytes(folder: Path, name: str) -> bytes | None:
    """The content of the regular file `name` in `folder`, decompressed for .gz; None for a link, a file
    of another kind or a .gz that does not decompress whole.

    Both the folder and the file are opened without following links, the file relative to the
    folder: an entry swapped for a link after it was listed is not followed either.
    """
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd
            )
        finally:
            os.close(folder_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        data = file.read()
    if not name.endswith(".gz"):
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
    UTF-8 keeps its bytes in raw_bytes and its text with U+FFFD for each invalid sequence. A day
    folder that is a link holds no lines (reported by unreadable_entries).
    """
    folder = day_folder(landing, day)
    if not folder.is_symlink() and not folder.is_dir():
        raise FileNotFoundError(f"nothing landed for {day.isoformat()}: {folder} does not exist")
    files: list[str] = []
    numbers: list[int] = []
    lines: list[str] = []
    undecodable: list[bytes | None] = []
    for path in (
        sorted(f for f in folder.iterdir() if _is_landed_file(f)) if _is_day_folder(folder) else []
    ):
        data = _file_bytes(folder, path.name)
        if data is None:
            continue  # reported by unreadable_entries
        file_lines = data.split(b"\n")
        if file_lines[-1] == b"":
            file_lines.pop()  # the newline that ends the last line does not start a new one
        try:
            decoded: list[tuple[str, bytes | None]] = [
                (text, None) for text in data.decode("utf-8").split("\n")[: len(file_lines)]
            ]
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


def ingested_rows(store: DeltaStore, version: int | None, days: list[date]) -> pa.Table:
    """The rows raw_events holds for `days` at `version` (none when there is no table yet)."""
    if version is None:
        return RAW_EVENTS.arrow().empty_table()
    first, last = (pa.scalar(day, pa.date32()) for day in (days[0], days[-1]))
    held = store.dataset(RAW_EVENTS.name, version).to_table(
        filter=(pc.field("ingest_date") >= first) & (pc.field("ingest_date") <= last)
    )
    return held.select(list(RAW_EVENTS.column_names)).cast(RAW_EVENTS.arrow())


def raw_partitions(
    landing: Path, days: list[date], ingested: pa.Table
) -> tuple[dict[date, pa.Table], dict[str, str]]:
    """Each day's raw_events rows under the landing contract (`appended_rows`), and the files that broke it.

    A day folder that is gone keeps the rows ingested from it; one that never landed is an error.
    """
    partitions: dict[date, pa.Table] = {}
    broken: dict[str, str] = {}
    for day in days:
        held = ingested.filter(pc.equal(ingested["ingest_date"], pa.scalar(day, pa.date32())))
        try:
            landed = landed_lines(landing, day)
        except FileNotFoundError:
            if held.num_rows == 0:
                raise
            landed = held.schema.empty_table()
        partitions[day], day_broken = appended_rows(held, landed)
        broken |= day_broken
    return partitions, broken


def appended_rows(ingested: pa.Table, landed: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """raw_events' rows under the landing contract, and each file that broke it (relative path -> how).

    The rows are the `ingested` ones, as they are, and the `landed` lines they do not hold (by
    source_file and line_number): lines appended since, and new files. An ingested line that is no
    longer landed, or landed with other bytes, keeps its row, and its file is reported.
    """
    ingested_keys, landed_keys = _line_keys(ingested), _line_keys(landed)
    position = pc.index_in(landed_keys, value_set=ingested_keys)
    rows = pa.concat_tables([ingested, landed.filter(pc.is_null(position))])
    gone = ingested.filter(pc.invert(pc.is_in(ingested_keys, value_set=landed_keys)))
    again = landed.filter(pc.is_valid(position))
    changed = again.filter(
        pc.not_equal(_landed_bytes(again), _landed_bytes(ingested.take(position.drop_null())))
    )
    return rows.sort_by(
        [("source_file", "ascending"), ("line_number", "ascending")]
    ), _broken_files(gone, changed, landed)


def _line_keys(rows: pa.Table) -> pa.ChunkedArray:
    # A file name holds no NUL.
    return pc.binary_join_element_wise(
        rows["source_file"], pc.cast(rows["line_number"], pa.string()), "\x00"
    )


def _landed_bytes(rows: pa.Table) -> pa.ChunkedArray:
    return pc.if_else(
        pc.is_null(rows["raw_bytes"]), pc.cast(rows["raw_line"], pa.binary()), rows["raw_bytes"]
    )


def _broken_files(gone: pa.Table, changed: pa.Table, landed: pa.Table) -> dict[str, str]:
    lines: dict[str, dict[str, list[int]]] = {}
    for kind, rows in (("gone", gone), ("changed", changed)):
        for file, number in zip(rows["source_file"].to_pylist(), rows["line_number"].to_pylist()):
            lines.setdefault(file, {}).setdefault(kind, []).append(number)
    still_landed = set(landed["source_file"].to_pylist())
    broken = {}
    for file, kinds in sorted(lines.items()):
        how = []
        if "gone" in kinds and file in still_landed:
            how.append(f"{_lines(kinds['gone'])} gone")
        elif "gone" in kinds:
            how.append(
                f"gone or empty ({len(kinds['gone'])} ingested line{'s' * (len(kinds['gone']) > 1)})"
            )
        if "changed" in kinds:
            how.append(f"{_lines(kinds['changed'])} changed")
        broken[file] = ", ".join(how) + ": raw_events keeps the lines as ingested"
    return broken


def _lines(numbers: list[int], shown: int = 10) -> str:
    """Line numbers as ranges, "line 3" or "lines 3, 7-9"; past `shown` ranges, how many lines in all."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans[:shown])
    if len(spans) > shown:
        text += f", … ({len(numbers)} lines)"
    return f"line {text}" if len(numbers) == 1 else f"lines {text}"
