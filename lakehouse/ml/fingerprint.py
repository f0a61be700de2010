"""A training set's canonical form and its SHA-256: what a run records and reproduction verifies.

`canonical_training_set` puts a training set in one fixed form (row order, column order, dtypes) so
that the same content always has the same SHA-256, whichever engine produced it and in whatever
order its rows came back. Kept apart from the model code so that `lakehouse reproduce` verifies a
training set without importing scikit-learn or matplotlib; pandas and Arrow are imported by the
functions that use them, so that `lakehouse.ml.lineage` can name the hash forms without them.

The digest is taken over a byte form of the frame, and that form is versioned: each run records the
form of its digest (tag `lakehouse.training_set.hash_form`), and a run is verified with the form it
recorded, so old runs keep verifying when a newer form is added.

- `canonical-v1` (CANONICAL_V1, what runs record now): bytes this module defines itself, so no
  library's layout can change them. SHA-256 of, in order:
  1. the text "lakehouse training set canonical-v1";
  2. the number of columns, then each column in the frame's order: its name, then its logical type,
     both as text: `string`, `int64`, `float64` or `timestamp_us_utc`;
  3. the number of rows;
  4. every row's encoding, the rows in ascending unsigned bytewise order of those encodings (a
     shorter encoding before a longer one it begins), so the digest does not depend on row order.
     A row's encoding is its values in column order, each one byte 0x00 followed by eight zero bytes
     when null, else one byte 0x01 followed by:
     - `int64`: the value as 8-byte big-endian two's complement;
     - `float64`: its IEEE-754 binary64 bit pattern, big-endian (-0.0 and 0.0 differ). A NaN is
       null: a pandas float column holds a missing value as NaN and cannot tell the two apart;
     - `timestamp_us_utc`: microseconds since 1970-01-01T00:00:00Z as `int64` (finer units are
       floored to the microsecond; the column must carry a time zone);
     - `string`: the length of its UTF-8 bytes, then those bytes (empty differs from null).
  A number (count or length) is 8 bytes big-endian unsigned; a text is its UTF-8 length as such a
  number, then its bytes. Every part says its own length, so two different tables never share bytes.
  A column of any other type (booleans, naive timestamps, objects that are not strings) is refused.
- `arrow-ipc` (ARROW_IPC, every run logged before forms were recorded, which has no tag): the bytes
  of an Arrow IPC stream of the frame as pyarrow writes it, without pandas metadata. A pyarrow or
  pandas release that writes other bytes (a string column read back as `large_string`, say) makes
  those runs fail verification; kept only to verify them.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ENTITY_COLUMNS = ["user_id", "event_timestamp"]
LABEL = "label"

CANONICAL_V1 = "canonical-v1"
ARROW_IPC = "arrow-ipc"
CURRENT_FORM = CANONICAL_V1
FORMS = (CANONICAL_V1, ARROW_IPC)


class UnknownHashForm(ValueError):
    """A digest form this version of the code does not define (a run logged by a newer version)."""


def canonical_training_set(df: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """Entity columns, label, then features in service order; sorted by (event_timestamp, user_id).

    Timestamps become UTC microseconds and features float64 (an integer feature with nulls comes back
    as float from some engines; one dtype for all keeps the hash stable).
    """
    import pandas as pd

    missing = [c for c in ENTITY_COLUMNS + [LABEL] + feature_names if c not in df.columns]
    if missing:
        raise ValueError(f"training set lacks columns {missing}")
    ts = pd.to_datetime(df["event_timestamp"])
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(str).to_numpy(),
            "event_timestamp": ts.astype("datetime64[us, UTC]").to_numpy(),
            LABEL: df[LABEL].astype("int64").to_numpy(),
        }
    )
    out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype(
        "datetime64[us, UTC]"
    )
    for name in feature_names:
        out[name] = df[name].astype("float64").to_numpy()
    return out.sort_values(["event_timestamp", "user_id"], kind="stable").reset_index(drop=True)


def content_sha256(df: pd.DataFrame, form: str = CURRENT_FORM) -> str:
    """SHA-256 of the frame's full content in the byte form `form` (see the module docstring)."""
    if form == CANONICAL_V1:
        return _canonical_v1_sha256(df)
    if form == ARROW_IPC:
        return _arrow_ipc_sha256(df)
    raise UnknownHashForm(
        f"training-set hash form {form!r} is not one this version knows ({', '.join(FORMS)})"
    )


def _arrow_ipc_sha256(df: pd.DataFrame) -> str:
    import io

    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(None).combine_chunks()
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


_MARKER = "lakehouse training set canonical-v1"
_CELL = 9  # bytes of a null or fixed-width value: the present/null byte, then 8 payload bytes
_NULL = bytes(_CELL)
_PRESENT = 1


def _number(n: int) -> bytes:
    return struct.pack(">Q", n)


def _text(s: str) -> bytes:
    encoded = s.encode("utf-8")
    return _number(len(encoded)) + encoded


def _canonical_v1_sha256(df: pd.DataFrame) -> str:
    names = list(df.columns)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError(f"canonical-v1 needs distinct text column names, got {names}")
    types = [_logical_type(name, df[name]) for name in names]
    digest = hashlib.sha256(_text(_MARKER) + _number(len(names)))
    for name, logical in zip(names, types):
        digest.update(_text(name) + _text(logical))
    digest.update(_number(len(df)))
    for row in sorted(_encoded_rows(df, types)):
        digest.update(row)
    return digest.hexdigest()


def _logical_type(name: str, column: pd.Series) -> str:
    import pandas as pd
    from pandas.api import types

    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp_us_utc"
    if types.is_bool_dtype(dtype) or types.is_datetime64_dtype(dtype):
        raise ValueError(
            f"column {name!r} is {dtype}: canonical-v1 defines no encoding for it (timestamps must carry a time zone)"
        )
    if types.is_integer_dtype(dtype):
        return "int64"
    if types.is_float_dtype(dtype):
        return "float64"
    if types.is_string_dtype(dtype):  # object columns too: their values are checked one by one
        return "string"
    raise ValueError(f"column {name!r} is {dtype}: canonical-v1 defines no encoding for it")


def _encoded_rows(df: pd.DataFrame, types: list[str]) -> list[bytes]:
    """Each row's encoding. Runs of fixed-width columns are encoded as one numpy block; strings once per
    distinct value."""
    import numpy as np

    n = len(df)
    parts: list[list[bytes]] = []  # per group of columns, each row's bytes
    run: list[tuple[str, str]] = []  # the current run of fixed-width columns

    def flush() -> None:
        if run:
            block = np.empty((n, _CELL * len(run)), dtype=np.uint8)
            for j, (name, logical) in enumerate(run):
                block[:, _CELL * j : _CELL * (j + 1)] = _fixed_cells(df[name], logical)
            data, width = block.tobytes(), block.shape[1]
            parts.append([data[i * width : (i + 1) * width] for i in range(n)])
            run.clear()

    for name, logical in zip(df.columns, types):
        if logical == "string":
            flush()
            parts.append(_string_cells(name, df[name]))
        else:
            run.append((name, logical))
    flush()
    if not parts:
        return [b""] * n
    return parts[0] if len(parts) == 1 else [b"".join(cells) for cells in zip(*parts)]


def _fixed_cells(column: pd.Series, logical: str) -> np.ndarray:
    """(rows, _CELL) bytes: the present/null byte, then the 8-byte big-endian payload (zeros for a null)."""
    import numpy as np

    null = column.isna().to_numpy()
    if logical == "float64":
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        null = null | np.isnan(values)
        payload = values.astype(">f8")
    elif logical == "int64":
        if column.dtype.kind == "u" and (column.dropna() > np.iinfo(np.int64).max).any():
            raise ValueError(f"column {column.name!r} holds integers beyond int64")
        payload = column.to_numpy(dtype="int64", na_value=0).astype(">i8")
    else:  # timestamp_us_utc
        utc = column.dt.tz_convert("UTC")
        ticks = utc.array.asi8  # since the epoch, in the column's own unit
        times, per = {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}[
            utc.dt.unit
        ]
        payload = (ticks * times // per).astype(">i8")  # floor division: floored to the microsecond
    cells = np.zeros((len(column), _CELL), dtype=np.uint8)
    cells[:, 0] = np.where(null, 0, _PRESENT)
    cells[:, 1:] = payload.view(np.uint8).reshape(-1, 8)
    cells[null, 1:] = 0
    return cells


def _string_cells(name: str, column: pd.Series) -> list[bytes]:
    """Each value's cell; a value repeated (user ids are) is encoded once."""
    import numpy as np
    import pandas as pd

    codes, values = pd.factorize(column, use_na_sentinel=True)  # null: code -1
    cells = []
    for value in values.tolist():
        if not isinstance(value, str):
            raise ValueError(
                f"column {name!r} holds {type(value).__name__} {value!r}: canonical-v1 strings are text or null"
            )
        cells.append(bytes([_PRESENT]) + _text(value))
    return np.array(cells + [_NULL], dtype=object)[codes].tolist()  # code -1 takes the last: null
