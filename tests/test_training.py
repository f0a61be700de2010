import hashlib
import json
import struct
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake

from lakehouse.ml.fingerprint import (
    ARROW_IPC,
    CANONICAL_V1,
    FORMS,
    UnknownHashForm,
    canonical_training_set,
    content_sha256,
)
from lakehouse.ml.lineage import HASH_FORM_TAG, InputTable, TrainingLineage
from lakehouse.ml.training import temporal_split, train_purchase_model
from lakehouse.ml.training_set import MixedInputVersionsError, shared_cleaned_events_version
from lakehouse.tables.storage import INPUTS_KEY

FEATURES = ["purchases_7d", "revenue_30d"]


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": [f"u{i % 10}" for i in range(n)],
            "event_timestamp": pd.to_datetime("2026-03-01")
            + pd.to_timedelta(np.arange(n) // 10, unit="D"),
            "label": rng.integers(0, 2, n),
            "purchases_7d": rng.integers(0, 5, n),
            "revenue_30d": rng.random(n) * 100,
        }
    )


@pytest.mark.parametrize("form", FORMS)
def test_hash_ignores_row_order_and_engine_dtypes_but_not_content(form):
    a = canonical_training_set(_frame(), FEATURES)
    shuffled = _frame().sample(frac=1, random_state=3)
    shuffled["event_timestamp"] = shuffled["event_timestamp"].dt.tz_localize(
        "UTC"
    )  # tz-aware vs naive
    shuffled["purchases_7d"] = shuffled["purchases_7d"].astype("float64")  # Spark's int-with-nulls
    b = canonical_training_set(shuffled, FEATURES)
    assert content_sha256(a, form) == content_sha256(b, form)
    changed = _frame()
    changed.loc[5, "revenue_30d"] += 0.01
    assert content_sha256(canonical_training_set(changed, FEATURES), form) != content_sha256(
        a, form
    )


def test_the_arrow_ipc_form_is_the_sha256_of_the_arrow_stream():
    import hashlib
    import io

    import pyarrow as pa

    frame = canonical_training_set(_frame(), FEATURES)
    sink = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert content_sha256(frame, ARROW_IPC) == hashlib.sha256(sink.getvalue()).hexdigest()


# Golden digests of one three-row training set, one per form. Runs' lineage holds such digests, so a
# change in the canonical frame (a dtype, the column order) or in a form's bytes (for the Arrow IPC
# form: pyarrow's layout) must show up here before it makes logged runs unverifiable.
GOLDEN_FRAME = pd.DataFrame(
    {
        "user_id": ["u2", "u1", "u1"],
        "event_timestamp": pd.to_datetime(["2026-03-02", "2026-03-01", "2026-03-02"]),
        "label": [1, 0, 1],
        "purchases_7d": [2, 0, 1],
        "revenue_30d": [19.99, 0.0, 5.5],
    }
)
ARROW_IPC_GOLDEN = (
    "0dd40794742aa73b5331e8934aa904c7907f2fc7a6c1e7d35967b820fbb698f5"  # recorded from pyarrow 25
)
CANONICAL_V1_GOLDEN = "1a14ffff1c380c1d96c16c2fe8c9df1db58aa118e74f83dfe18ae366f510b689"  # = sha256 of the bytes below


def test_the_arrow_ipc_form_keeps_its_golden_digest():
    assert (
        content_sha256(canonical_training_set(GOLDEN_FRAME, FEATURES), ARROW_IPC)
        == ARROW_IPC_GOLDEN
    )


# canonical-v1 written out by hand from its definition (lakehouse.ml.fingerprint), with the standard library only.
def _number(n: int) -> bytes:
    return struct.pack(">Q", n)


def _text(s: str) -> bytes:
    return _number(len(s.encode("utf-8"))) + s.encode("utf-8")


def _present(payload: bytes) -> bytes:
    return b"\x01" + payload


NULL = b"\x00" * 9


def _int(v: int) -> bytes:
    return _present(struct.pack(">q", v))


def _float(v: float) -> bytes:
    return _present(struct.pack(">d", v))


def _string(s: str) -> bytes:
    return _present(_text(s))


def _utc(day: str) -> bytes:
    return _int(
        (
            datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            - datetime(1970, 1, 1, tzinfo=timezone.utc)
        )
        // timedelta(microseconds=1)
    )


def _canonical_v1(columns: list[tuple[str, str]], rows: list[bytes]) -> str:
    header = (
        _text("lakehouse training set canonical-v1")
        + _number(len(columns))
        + b"".join(_text(n) + _text(t) for n, t in columns)
    )
    return hashlib.sha256(header + _number(len(rows)) + b"".join(sorted(rows))).hexdigest()


def test_the_canonical_v1_form_keeps_its_golden_digest_which_its_definition_gives():
    columns = [
        ("user_id", "string"),
        ("event_timestamp", "timestamp_us_utc"),
        ("label", "int64"),
        ("purchases_7d", "float64"),
        ("revenue_30d", "float64"),
    ]
    rows = [
        _string("u1") + _utc("2026-03-01") + _int(0) + _float(0.0) + _float(0.0),
        _string("u1") + _utc("2026-03-02") + _int(1) + _float(1.0) + _float(5.5),
        _string("u2") + _utc("2026-03-02") + _int(1) + _float(2.0) + _float(19.99),
    ]
    assert _canonical_v1(columns, rows) == CANONICAL_V1_GOLDEN
    assert (
        content_sha256(canonical_training_set(GOLDEN_FRAME, FEATURES), CANONICAL_V1)
        == CANONICAL_V1_GOLDEN
    )
    assert (
        content_sha256(canonical_training_set(GOLDEN_FRAME, FEATURES)) == CANONICAL_V1_GOLDEN
    )  # what new runs record


def test_canonical_v1_nulls_empty_strings_nan_negative_zero_and_row_order_as_defined():
    frame = pd.DataFrame(
        {
            "s": pd.Series(["", None, "é", "b"], dtype=object),
            "t": pd.to_datetime(
                ["1969-12-31 23:59:59.999999", None, "2026-03-01 12:00:00.0000019", "2026-03-01"],
                utc=True,
                format="ISO8601",
            ),
            "i": pd.array([-1, None, 2**62, 0], dtype="Int64"),
            "f": [-0.0, np.nan, 0.0, None],
        }
    )
    columns = [("s", "string"), ("t", "timestamp_us_utc"), ("i", "int64"), ("f", "float64")]
    rows = [
        _string("") + _int(-1) + _int(-1) + _float(-0.0),  # one microsecond before the epoch
        NULL + NULL + NULL + NULL,  # NaN is null too
        _string("é") + _int(1772366400000001) + _int(2**62) + _float(0.0),  # 1.9 us floored to 1
        _string("b") + _utc("2026-03-01") + _int(0) + NULL,
    ]
    assert content_sha256(frame, CANONICAL_V1) == _canonical_v1(columns, rows)
    assert content_sha256(frame.iloc[::-1], CANONICAL_V1) == _canonical_v1(
        columns, rows
    )  # any row order


def test_canonical_v1_depends_on_no_library_representation_but_on_every_name_and_boundary():
    frame = canonical_training_set(_frame(), FEATURES)
    digest = content_sha256(frame, CANONICAL_V1)
    # How pandas holds the strings or what unit the timestamps are in changes no byte.
    for dtype in ("string[python]", "string[pyarrow]"):
        assert content_sha256(frame.astype({"user_id": dtype}), CANONICAL_V1) == digest
    assert (
        content_sha256(frame.astype({"event_timestamp": "datetime64[ns, UTC]"}), CANONICAL_V1)
        == digest
    )
    assert (
        content_sha256(
            frame.assign(event_timestamp=frame["event_timestamp"].dt.tz_convert("Europe/Paris")),
            CANONICAL_V1,
        )
        == digest
    )
    # A column's name and type are content; so is where one string ends and the next begins.
    assert (
        content_sha256(frame.rename(columns={"revenue_30d": "revenue_7d"}), CANONICAL_V1) != digest
    )
    assert content_sha256(frame.astype({"label": "float64"}), CANONICAL_V1) != digest
    split = [pd.DataFrame({"a": ["ab"], "b": ["c"]}), pd.DataFrame({"a": ["a"], "b": ["bc"]})]
    assert content_sha256(split[0], CANONICAL_V1) != content_sha256(split[1], CANONICAL_V1)
    # Types it does not define are refused rather than hashed some way.
    for bad in (
        pd.DataFrame({"b": [True]}),
        pd.DataFrame({"t": pd.to_datetime(["2026-03-01"])}),
        pd.DataFrame({"o": [b"x"]}),
    ):
        with pytest.raises(ValueError, match="canonical-v1"):
            content_sha256(bad, CANONICAL_V1)
    with pytest.raises(UnknownHashForm, match="canonical-v9"):
        content_sha256(frame, "canonical-v9")


def test_a_run_records_its_hash_form_and_one_without_it_used_the_arrow_ipc_form():
    lineage = TrainingLineage(
        (InputTable("labels", "training_labels", "/lake/training_labels", 3, 10),),
        "a" * 64,
        10,
        "svc",
        ("v:f",),
        "proj",
    )
    tags = lineage.to_tags()
    assert tags[HASH_FORM_TAG] == CANONICAL_V1 and TrainingLineage.from_tags(tags) == lineage
    del tags[HASH_FORM_TAG]  # a run logged before forms were recorded
    assert TrainingLineage.from_tags(tags).training_set_hash_form == ARROW_IPC


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="revenue_30d"):
        canonical_training_set(_frame().drop(columns=["revenue_30d"]), FEATURES)


def test_temporal_split_trains_on_earlier_times_only():
    frame = canonical_training_set(_frame(), FEATURES)
    train, test, split = temporal_split(frame)
    assert train["event_timestamp"].max() < split <= test["event_timestamp"].min()
    assert len(train) + len(test) == len(frame)


def test_model_learns_a_learnable_signal():
    rng = np.random.default_rng(1)
    n = 4000
    purchases = rng.poisson(1.0, n)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "event_timestamp": pd.to_datetime("2026-03-01")
            + pd.to_timedelta(np.arange(n) % 20, unit="D"),
            "label": (rng.random(n) < 0.1 + 0.2 * np.minimum(purchases, 4)).astype(int),
            "purchases_7d": purchases,
            "revenue_30d": rng.random(n),
        }
    )
    trained = train_purchase_model(canonical_training_set(frame, FEATURES), FEATURES)
    assert trained.metrics["test_auc"] > 0.7


# Training takes its labels and features from one cleaned_events version. Tiny Delta tables, each
# commit recording (or not) the cleaned_events version it was computed from, as the assets' commits do.
def _table(path, cleaned_events: int | None, *, compact: bool = False) -> InputTable:
    metadata = (
        {}
        if cleaned_events is None
        else {INPUTS_KEY: json.dumps({"cleaned_events": cleaned_events})}
    )
    for n in range(2):
        write_deltalake(
            str(path),
            pa.table({"n": [n]}),
            mode="append",
            commit_properties=CommitProperties(custom_metadata=metadata),
        )
    if (
        compact
    ):  # what table maintenance commits afterwards: a setting, then compaction; no row changes
        DeltaTable(str(path)).alter.set_table_properties({"delta.enableExpiredLogCleanup": "false"})
        DeltaTable(str(path)).optimize.compact()
    version = DeltaTable(str(path)).version()
    return InputTable(path.name, path.name, str(path), version, 2)


def test_training_tables_from_one_cleaned_events_version_are_accepted_even_after_compaction(
    tmp_path,
):
    inputs = (
        _table(tmp_path / "training_labels", 7),
        _table(tmp_path / "user_features", 7, compact=True),
        _table(tmp_path / "category_features", 7),
    )
    assert inputs[1].version == 3  # two writes, the setting, the compaction
    assert shared_cleaned_events_version(inputs) == 7


def test_training_refuses_tables_from_different_or_unknown_cleaned_events_versions_in_one_line(
    tmp_path,
):
    labels, users = _table(tmp_path / "training_labels", 7), _table(tmp_path / "user_features", 8)
    with pytest.raises(MixedInputVersionsError) as refused:
        shared_cleaned_events_version(
            (labels, users, _table(tmp_path / "category_features", 7, compact=True))
        )
    assert str(refused.value) == (
        "training refused: its tables do not come from one cleaned_events version "
        "(training_labels v1 from cleaned_events v7, "
        "user_features v1 from cleaned_events v8, category_features v3 from cleaned_events v7); "
        "rematerialize training_labels, user_features, category_features together"
    )
    # A table whose commit records no input (written before inputs were recorded) is not taken to agree.
    old = _table(tmp_path / "old_features", None)
    with pytest.raises(
        MixedInputVersionsError,
        match=r"^training refused: .*old_features v1 from cleaned_events unknown \(none recorded\)\); [^\n]*$",
    ):
        shared_cleaned_events_version((labels, old))
    with pytest.raises(MixedInputVersionsError, match="unknown"):
        shared_cleaned_events_version((old, old))
